"""Tasks on deals: what a manager has to do, by when."""

from .due import announce_due_tasks
from .repository import due_tasks, mark_due_notified

__all__ = ["announce_due_tasks", "due_tasks", "mark_due_notified"]
