"""Encryption of secret values (channel tokens, app secret, bot token, API keys).

The key is derived from ``APP_KEY`` with HKDF-SHA256 and a purpose label, so the same
root key never encrypts two kinds of thing with the same derived key. Values are sealed
with AES-256-GCM; a sealed value is ``v1:`` + urlsafe base64 of nonce ‖ ciphertext ‖ tag.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["DecryptionError", "SecretBox", "mask"]

_PREFIX = "v1:"
_NONCE = 12


class DecryptionError(ValueError):
    """A sealed value is malformed, or was sealed with another key or purpose."""


class SecretBox:
    """Seals and opens secret strings with a key derived from ``APP_KEY``."""

    def __init__(self, app_key: str, purpose: str = "settings") -> None:
        root = base64.b64decode(app_key, validate=True)
        self._aead = AESGCM(
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"jggl:{purpose}".encode()).derive(root)
        )
        self._aad = purpose.encode()

    def seal(self, plaintext: str) -> str:
        """Encrypt ``plaintext``; each call uses a fresh random nonce."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._aad)
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str:
        """Decrypt a value made by :meth:`seal`; raises :class:`DecryptionError` otherwise."""
        if not sealed.startswith(_PREFIX):
            raise DecryptionError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], self._aad).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise DecryptionError("cannot decrypt: wrong APP_KEY or corrupted value") from None

    @staticmethod
    def is_sealed(value: str) -> bool:
        """Whether ``value`` looks like the output of :meth:`seal`."""
        return value.startswith(_PREFIX)


def mask(secret: str | None) -> str | None:
    """What a secret looks like in responses and logs: its last four characters at most."""
    if not secret:
        return secret
    if len(secret) <= 8:
        return "•" * 8
    return "•" * 8 + secret[-4:]
