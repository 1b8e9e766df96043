"""What the broker's tests share: the broker users' credentials, made once per test
session (bcrypt is slow on purpose), each a password for the service and its hash for
the NATS server."""

from __future__ import annotations

import pytest

from jggl_common.testing import NATS_USERS
from jggl_sandbox.nats_credentials import NatsCredential, new_credentials


@pytest.fixture(scope="session")
def nats_credentials() -> dict[str, NatsCredential]:
    """A fresh password and its bcrypt hash for each user of deploy/nats/auth.conf."""
    return new_credentials(NATS_USERS)
