"""Service levels: how long a customer has waited, counted in the business's working hours."""

from .hours import BusinessHours, parse_hours

__all__ = ["BusinessHours", "parse_hours"]
