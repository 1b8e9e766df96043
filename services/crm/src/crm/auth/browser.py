"""Browser sessions: the access token in an httpOnly cookie, guarded by a double-submit CSRF token.

A browser keeps no token where scripts can read it: the signed access token (the same kind
the bearer flow issues) lives in the httpOnly cookie ``jggl_session``. Cookies are sent by
the browser on its own, so a request authenticated by that cookie and changing something
must also prove it was made by our page: it carries ``X-CSRF-Token`` equal to the readable
cookie ``jggl_csrf``, which another site can neither read nor set. The CSRF token is an HMAC
of the session token under a key of its own, so it is checked without any storage and
changes with every login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from fastapi import Response

SESSION_COOKIE = "jggl_session"
"""httpOnly cookie holding the access token."""

CSRF_COOKIE = "jggl_csrf"
"""Readable cookie holding the CSRF token the page echoes in :data:`CSRF_HEADER`."""

CSRF_HEADER = "X-CSRF-Token"
"""Header every unsafe request authenticated by the session cookie must carry."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""Methods that change nothing and so need no CSRF token."""

CSRF_MISSING = f"The {CSRF_HEADER} header is missing: send the value of the {CSRF_COOKIE} cookie with this request"
CSRF_MISMATCH = f"The {CSRF_HEADER} header does not match this session: reload the page or sign in again"


@dataclass(frozen=True)
class BrowserSessions:
    """Sets, clears and checks the session and CSRF cookies."""

    csrf_key: bytes
    secure: bool
    max_age: int
    same_site: Literal["lax", "strict"] = "lax"
    previous_csrf_keys: tuple[bytes, ...] = ()
    """Keys before a rotation of AUTH_SIGNING_KEY: sessions opened with them keep working."""

    def csrf_token(self, session_token: str, key: bytes | None = None) -> str:
        """The CSRF token that belongs to ``session_token``."""
        digest = hmac.new(key or self.csrf_key, session_token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def csrf_refusal(self, method: str, session_token: str, header: str | None) -> str | None:
        """Why this cookie-authenticated request is refused (a sentence), or None if it may go on."""
        if method.upper() in SAFE_METHODS:
            return None
        if not header:
            return CSRF_MISSING
        for key in (self.csrf_key, *self.previous_csrf_keys):
            if hmac.compare_digest(header.encode(), self.csrf_token(session_token, key).encode()):
                return None
        return CSRF_MISMATCH

    def open(self, response: Response, session_token: str) -> str:
        """Put the session and its CSRF token into cookies; returns the CSRF token."""
        csrf = self.csrf_token(session_token)
        for name, value, httponly in ((SESSION_COOKIE, session_token, True), (CSRF_COOKIE, csrf, False)):
            response.set_cookie(
                name,
                value,
                max_age=self.max_age,
                path="/",
                secure=self.secure,
                httponly=httponly,
                samesite=self.same_site,
            )
        return csrf

    def close(self, response: Response) -> None:
        """Tell the browser to forget both cookies."""
        for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
            response.delete_cookie(name, path="/", secure=self.secure, httponly=httponly, samesite=self.same_site)
