"""Sealed values bound to their setting's name, key rings across an APP_KEY rotation, fingerprints."""

from __future__ import annotations

import base64
import os

import pytest

from jggl_common import crypto
from jggl_common.crypto import DecryptionError, SecretBox, configure_fingerprints, fingerprint, mask


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_a_value_sealed_for_one_setting_does_not_open_as_another() -> None:
    box = SecretBox(new_key(), purpose="live-settings")
    sealed = box.seal("app-secret-value", name="meta.app_secret")
    assert sealed.startswith("v2:")
    assert box.open(sealed, name="meta.app_secret") == "app-secret-value"
    with pytest.raises(DecryptionError):
        box.open(sealed, name="telegram.bot_token")
    with pytest.raises(DecryptionError, match="bound to a name"):
        box.open(sealed)


def test_values_sealed_before_names_were_bound_still_open_and_ask_to_be_resealed() -> None:
    key = new_key()
    box = SecretBox(key)
    legacy = box.seal("page-token")  # no name: the v1 form
    assert legacy.startswith("v1:")
    assert box.open(legacy, name="meta.access_token") == "page-token"
    assert box.needs_reseal(legacy, name="meta.access_token")
    assert not box.needs_reseal(legacy)
    assert not box.needs_reseal(box.seal("page-token", name="meta.access_token"), name="meta.access_token")


def test_after_a_rotation_old_values_open_with_the_previous_key_and_new_ones_use_the_new_key() -> None:
    old, new = new_key(), new_key()
    before = SecretBox(old).seal("bot-token", name="telegram.bot_token")
    ring = SecretBox([new, old])
    assert ring.open(before, name="telegram.bot_token") == "bot-token"
    assert ring.needs_reseal(before, name="telegram.bot_token")
    after = ring.seal("bot-token", name="telegram.bot_token")
    assert not ring.needs_reseal(after, name="telegram.bot_token")
    # Sealed with the new key only: once APP_KEY_PREVIOUS is dropped it still opens.
    assert SecretBox(new).open(after, name="telegram.bot_token") == "bot-token"
    with pytest.raises(DecryptionError):
        SecretBox(old).open(after, name="telegram.bot_token")
    with pytest.raises(DecryptionError):
        SecretBox(new).open(before, name="telegram.bot_token")


def test_fingerprints_are_keyed_stable_and_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "_fingerprint_key", crypto._fingerprint_key)
    key = new_key()
    configure_fingerprints(key)
    first = fingerprint("gemini-key-123")
    assert len(first) == 8
    assert set(first) <= set("0123456789abcdef")
    assert fingerprint("gemini-key-123") == first
    assert fingerprint("gemini-key-124") != first
    assert mask("gemini-key-123") == f"set · fp {first}"
    configure_fingerprints(new_key())
    assert fingerprint("gemini-key-123") != first  # another APP_KEY: another fingerprint
