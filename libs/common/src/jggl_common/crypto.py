"""Encryption of secret values (channel tokens, app secret, bot token, API keys), and their fingerprints.

Keys are derived from ``APP_KEY`` with HKDF-SHA256 and a purpose label, so the same root
key never encrypts two kinds of thing with the same derived key. Values are sealed with
AES-256-GCM. Two forms exist:

- ``v2:`` + urlsafe base64 of nonce ‖ ciphertext ‖ tag, sealed with a *name* (a setting's
  key, e.g. ``meta.app_secret``) in the associated data: it opens only under that name, so
  a sealed value cannot be copied from one setting to another.
- ``v1:``, the same without a name: values sealed before names were bound, and values that
  have no name (a channel's page token). Still opened, also where a name is given; crm
  re-seals the settings it stores as ``v2`` when it starts (:meth:`SecretBox.needs_reseal`).

A box holds a key ring: the first key seals, every key opens. After ``APP_KEY`` is rotated
the previous keys (``APP_KEY_PREVIOUS``) keep old values readable until they are re-sealed.

:func:`mask` is how a secret looks in answers, logs and the audit log: that it is set, and a
keyed fingerprint (HMAC-SHA256, first 8 hex digits) that tells whether two values are the
same without revealing a single character of either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["DecryptionError", "SecretBox", "configure_fingerprints", "fingerprint", "mask"]

_V1 = "v1:"
_V2 = "v2:"
_NONCE = 12


class DecryptionError(ValueError):
    """A sealed value is malformed, or was sealed with another key, purpose or name."""


def _derive(app_key: str, info: str) -> bytes:
    root = base64.b64decode(app_key, validate=True)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(root)


class SecretBox:
    """Seals and opens secret strings with keys derived from ``APP_KEY`` (and the keys before it)."""

    def __init__(self, app_key: str | Sequence[str], purpose: str = "settings") -> None:
        keys = (app_key,) if isinstance(app_key, str) else tuple(app_key)
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self._aeads = [AESGCM(_derive(key, f"jggl:{purpose}")) for key in keys]
        self._purpose = purpose

    def _aad(self, name: str | None) -> bytes:
        return self._purpose.encode() if name is None else f"{self._purpose}\x00{name}".encode()

    def seal(self, plaintext: str, *, name: str | None = None) -> str:
        """Encrypt ``plaintext`` with the current key (a fresh random nonce each call),
        bound to ``name`` when given."""
        nonce = os.urandom(_NONCE)
        sealed = self._aeads[0].encrypt(nonce, plaintext.encode(), self._aad(name))
        return (_V1 if name is None else _V2) + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, name: str | None = None) -> str:
        """Decrypt a value made by :meth:`seal`; :class:`DecryptionError` otherwise.

        A ``v2`` value opens only with the ``name`` it was sealed with; a ``v1`` value has none.
        """
        return self._open(sealed, name)[0]

    def needs_reseal(self, sealed: str, *, name: str | None = None) -> bool:
        """Whether a value that opens was sealed with a previous key, or without its ``name``."""
        _, key_index, version = self._open(sealed, name)
        return key_index > 0 or (name is not None and version == _V1)

    def _open(self, sealed: str, name: str | None) -> tuple[str, int, str]:
        version = sealed[:3]
        if version == _V2:
            if name is None:
                raise DecryptionError("this value is bound to a name: open it with that name")
            aad = self._aad(name)
        elif version == _V1:
            aad = self._aad(None)
        else:
            raise DecryptionError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed[3:])
        except (binascii.Error, ValueError):
            raise DecryptionError("not a sealed value") from None
        for index, aead in enumerate(self._aeads):
            try:
                return aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad).decode(), index, version
            except (InvalidTag, ValueError):
                continue
        raise DecryptionError("cannot decrypt: wrong APP_KEY, another setting's value, or corrupted")

    @staticmethod
    def is_sealed(value: str) -> bool:
        """Whether ``value`` looks like the output of :meth:`seal`."""
        return value.startswith((_V1, _V2))


_fingerprint_key: bytes = os.urandom(32)


def configure_fingerprints(app_key: str) -> None:
    """Make :func:`fingerprint` (and :func:`mask`) stable for this ``APP_KEY``.

    Until a process calls it, fingerprints use a random key of the process: never unkeyed,
    but not comparable with another process's.
    """
    global _fingerprint_key
    _fingerprint_key = _derive(app_key, "jggl:secret-fingerprint")


def fingerprint(secret: str) -> str:
    """The first 8 hex digits of HMAC-SHA256(secret) under a key derived from ``APP_KEY``."""
    return hmac.new(_fingerprint_key, secret.encode(), hashlib.sha256).hexdigest()[:8]


def mask(secret: str | None) -> str | None:
    """What a secret looks like in responses and logs: ``set · fp 3f9a1c2e`` (no character of it)."""
    if not secret:
        return secret
    return f"set · fp {fingerprint(secret)}"
