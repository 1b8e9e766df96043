"""Service levels: how long a customer has waited, counted in the business's working hours."""

from .hours import BusinessHours, parse_hours
from .sweep import SweepResult, sweep_sla

__all__ = ["BusinessHours", "SweepResult", "parse_hours", "sweep_sla"]
