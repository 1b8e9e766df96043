"""Tasks on deals: what a manager has to do, by when."""

from .repository import due_tasks, mark_due_notified

__all__ = ["due_tasks", "mark_due_notified"]
