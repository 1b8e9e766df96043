"""Access tokens: HS256 JWTs signed with a key derived from ``APP_KEY``.

``sub`` is the user id. ``pwd`` is a keyed fingerprint of the password hash, so changing
a password ends every session opened with the old one. The user's ``is_active`` is
checked on every request, so deactivating someone takes effect at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from jggl_common.contracts import utcnow

ISSUER = "jggl-crm"


class InvalidToken(Exception):
    """Expired, forged, malformed or otherwise unusable token."""


@dataclass(frozen=True)
class AccessClaims:
    """What a verified token says."""

    user_id: int
    password_fingerprint: str
    expires_at: datetime


class Tokens:
    """Issues and verifies access tokens."""

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds

    def fingerprint(self, password_hash: str) -> str:
        """A short keyed digest of a password hash (reveals nothing about it)."""
        digest = hmac.new(self._key, password_hash.encode(), hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(digest).decode()

    def issue(self, user_id: int, password_hash: str, *, now: datetime | None = None) -> str:
        """A token for ``user_id`` valid for ``ttl_seconds`` from ``now``."""
        issued = now or utcnow()
        claims = {
            "sub": str(user_id),
            "iss": ISSUER,
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(seconds=self.ttl_seconds)).timestamp()),
            "pwd": self.fingerprint(password_hash),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; :class:`InvalidToken` otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iat", "iss"]},
            )
            user_id = int(claims["sub"])
            fingerprint = claims.get("pwd")
            if not isinstance(fingerprint, str) or not 0 < user_id <= 2_147_483_647:
                raise InvalidToken("malformed claims")
            expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo)
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidToken(str(exc)) from None
        return AccessClaims(user_id=user_id, password_fingerprint=fingerprint, expires_at=expires_at)
