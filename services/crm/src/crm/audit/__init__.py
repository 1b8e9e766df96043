"""What admins read about the system: the audit log of settings changes and the system log
of integration failures, dead letters and channel health changes."""

from .service import record_change, record_channel_health, record_dead_letter, record_integration_failure
from .subscribers import register_system_log

__all__ = [
    "record_change",
    "record_channel_health",
    "record_dead_letter",
    "record_integration_failure",
    "register_system_log",
]
