"""Integers from outside payloads: what looks like one is read, anything else is None, nothing raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jggl_common.numbers import loose_int


def test_integers_and_ascii_digit_strings_are_read() -> None:
    assert loose_int(1711111111000) == 1711111111000
    assert loose_int("1711111111000") == 1711111111000
    assert loose_int("007") == 7


def test_what_only_looks_like_digits_is_not_a_number() -> None:
    # All of these pass str.isdigit(); int() refuses the first and reads the others.
    assert loose_int("²") is None
    assert loose_int("١٢٣") is None  # Arabic-Indic digits
    assert loose_int("１２") is None  # full-width digits
    assert loose_int("9" * 5000) is None  # beyond int()'s 4300-digit limit
    for value in (True, False, None, "", " 1", "-1", "1.5", 1.5, [1], {"a": 1}):
        assert loose_int(value) is None


@given(st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none()))
def test_never_raises(value: object) -> None:
    result = loose_int(value)
    assert result is None or isinstance(result, int)
