"""The scheduler's jobs in crm: the work crm does on their ticks (SLA check, due tasks,
daily digest), and the admins' view and commands (``/api/jobs``)."""

from .work import ScheduledWork

__all__ = ["ScheduledWork"]
