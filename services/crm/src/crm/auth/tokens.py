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
import contextlib
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    key_index: int = field(default=0, repr=False)
    """Which key of the ring verified the token (0: the current one)."""

    def revoked_by(self, tokens_valid_after: datetime | None) -> bool:
        """Whether the token was issued before ``tokens_valid_after`` (the user's)."""
        return tokens_valid_after is not None and self.issued_at < tokens_valid_after.timestamp()


class Tokens:
    """Issues and verifies access tokens."""

    def __init__(self, keys: bytes | Sequence[bytes], ttl_seconds: int) -> None:
        """``keys``: the signing key, or the ring (the first signs, every one verifies)."""
        self._keys = (keys,) if isinstance(keys, bytes) else tuple(keys)
        if not self._keys:
            raise ValueError("Tokens needs at least one key")
        self._key = self._keys[0]
        self.ttl_seconds = ttl_seconds

    def fingerprint(self, password_hash: str, *, key_index: int = 0) -> str:
        """A short keyed digest of a password hash (reveals nothing about it)."""
        digest = hmac.new(self._keys[key_index], password_hash.encode(), hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(digest).decode()

    def password_matches(self, claims: AccessClaims, password_hash: str) -> bool:
        """Whether the token was issued for the password the user has now."""
        expected = self.fingerprint(password_hash, key_index=claims.key_index)
        return hmac.compare_digest(expected, claims.password_fingerprint)

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
        """The claims of a valid token (signed with any key of the ring); :class:`InvalidToken` otherwise."""
        *earlier, last = self._keys  # the current key first; the ring is never empty
        for index, key in enumerate(earlier):
            with contextlib.suppress(InvalidToken):
                return self._verify(token, key, index)
        return self._verify(token, last, len(earlier))

    def _verify(self, token: str, key: bytes, key_index: int) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                key,
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
            user_id=user_id,
            password_fingerprint=fingerprint,
            issued_at=float(issued_at),
            expires_at=expires_at,
            key_index=key_index,
        )
