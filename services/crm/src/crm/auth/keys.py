"""crm's signing keys, one per purpose, derived from ``AUTH_SIGNING_KEY``.

Access tokens, CSRF tokens and list cursors are signed with keys derived from
``AUTH_SIGNING_KEY``, a secret only crm holds: the other services hold ``APP_KEY`` (to open
the live settings) but nothing that can mint a token. Each use gets its own key (HKDF with
a purpose label), so a value made for one purpose can never be replayed as another.

Rotation: the new key goes into ``AUTH_SIGNING_KEY`` and the old one into
``AUTH_SIGNING_KEY_PREVIOUS``; what the old key signed stays valid until it expires (at
most ``TOKEN_TTL_SECONDS``), then the previous key can be dropped. Without
``AUTH_SIGNING_KEY`` a random key of the process signs: safe, but sessions end when crm
restarts and replicas do not accept each other's tokens (``make run`` keeps one in
``.run/``).
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crm.config import CrmSettings
from jggl_common.settings import split_keys

_PROCESS_KEY = base64.b64encode(os.urandom(32)).decode()


def derive_key(root_key: str, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` derived from a base64 root key with HKDF-SHA256."""
    root = base64.b64decode(root_key, validate=True)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"jggl:crm:{purpose}".encode()).derive(root)


def signing_roots(settings: CrmSettings) -> tuple[str, ...]:
    """``AUTH_SIGNING_KEY`` (or the process's random key) first, then ``AUTH_SIGNING_KEY_PREVIOUS``."""
    return (settings.auth_signing_key or _PROCESS_KEY, *split_keys(settings.auth_signing_key_previous))


def signing_keys(settings: CrmSettings, purpose: str) -> tuple[bytes, ...]:
    """The keys for ``purpose``: the first signs, every one verifies."""
    return tuple(derive_key(root, purpose) for root in signing_roots(settings))
