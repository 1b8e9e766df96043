"""Password hashing with Argon2id.

Hashing is deliberately slow and memory-hungry, so it runs in worker threads (the event
loop keeps serving) and only a few run at once (a login flood cannot exhaust memory).
"""

from __future__ import annotations

import asyncio
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


class WeakPassword(ValueError):
    """A password the policy refuses; the message says why, as a sentence."""


def check_policy(password: str, what: str = "the password") -> None:
    """The password policy, for every way a password is set; :class:`WeakPassword` when refused."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"{what} must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"{what} must have at most {MAX_PASSWORD_LENGTH} characters")


class Passwords:
    """Hashes and verifies passwords."""

    def __init__(self, concurrency: int = 4) -> None:
        self._hash = PasswordHash((Argon2Hasher(),))
        self._limit = asyncio.Semaphore(concurrency)
        # Unknown e-mails are checked against this, so "no such user" takes as long as
        # "wrong password" and response times do not reveal who has an account.
        self._decoy: str | None = None

    async def hash(self, password: str) -> str:
        """The Argon2id hash of ``password``."""
        async with self._limit:
            return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """Whether ``password`` matches, and a new hash when the stored one uses old parameters.

        ``password_hash`` None (no such user) costs the same time and never matches.
        """
        async with self._limit:
            if password_hash is None:
                if self._decoy is None:
                    self._decoy = await asyncio.to_thread(self._hash.hash, secrets.token_urlsafe(16))
                await asyncio.to_thread(self._hash.verify, password, self._decoy)
                return False, None
            try:
                return await asyncio.to_thread(self._hash.verify_and_update, password, password_hash)
            except Exception:
                # A damaged or foreign hash must lock the account, not crash the login.
                return False, None
