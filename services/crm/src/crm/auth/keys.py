"""Purpose-bound keys derived from ``APP_KEY``.

Each use (access tokens, list cursors...) gets its own key, so a value made for one
purpose can never be replayed as another.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(app_key: str, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` derived from the base64 ``APP_KEY`` with HKDF-SHA256."""
    root = base64.b64decode(app_key, validate=True)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"jggl:crm:{purpose}".encode()).derive(root)
