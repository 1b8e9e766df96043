"""Reading integers out of JSON that outside systems wrote (Meta's webhooks and answers)."""

from __future__ import annotations

from typing import Any

__all__ = ["loose_int"]


def loose_int(value: Any) -> int | None:
    """``value`` as an integer when it is one or a string of ASCII digits, else ``None``.

    Never raises: ``str.isdigit()`` is also true for characters ``int()`` refuses ("²",
    Arabic-Indic digits...), and ``int()`` refuses strings of more than 4300 digits;
    neither may turn an outside payload into an error. Booleans are not integers here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        try:
            return int(value)
        except ValueError:
            return None
    return None
