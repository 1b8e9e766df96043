"""Access tokens: HS256 JWTs signed with a key derived from crm's own ``AUTH_SIGNING_KEY``.

``sub`` is the user id; ``iat`` is when the token was issued, to the microsecond, and a
token issued before the user's ``tokens_valid_after`` is refused (signing out, being
deactivated, a new role or a new password move that moment forward). ``pwd`` is a keyed
fingerprint of the password hash, so a password changed anywhere (``crm-admin``) ends the
sessions opened with the old one too. The user's row is read on every request anyway
(``is_active``), so the check costs no query.
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
    issued_at: float
    """POSIX seconds, with microseconds."""
    expires_at: datetime

    def revoked_by(self, tokens_valid_after: datetime | None) -> bool:
        """Whether the token was issued before ``tokens_valid_after`` (the user's)."""
        return tokens_valid_after is not None and self.issued_at < tokens_valid_after.timestamp()


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
            # Not rounded: a token issued just after a sign-out must outlive it.
            "iat": issued.timestamp(),
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
            issued_at = claims["iat"]
            if (
                not isinstance(fingerprint, str)
                or not 0 < user_id <= 2_147_483_647
                or isinstance(issued_at, bool)
                or not isinstance(issued_at, int | float)
            ):
                raise InvalidToken("malformed claims")
            expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo)
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidToken(str(exc)) from None
        return AccessClaims(
            user_id=user_id, password_fingerprint=fingerprint, issued_at=float(issued_at), expires_at=expires_at
        )
