"""``Cluster.broker_refusals()``, which the authenticated system test expects empty, against
a real nats-server with the deployment's users: it reports a login with a wrong password
and a publish outside a user's permissions, and nothing while every client behaves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from jggl_common.bus import inbox_prefix
from jggl_common.e2e import Cluster, eventually
from jggl_sandbox.nats_credentials import NatsCredential


@pytest.fixture
def cluster(tmp_path: Path, nats_credentials: dict[str, NatsCredential]) -> Iterator[Cluster]:
    """The cluster's authenticated broker alone (no service started)."""
    started = Cluster(tmp_path / "jetstream", nats_users=nats_credentials)
    try:
        yield started
    finally:
        started.close()


async def _connect(cluster: Cluster, user: str, password: str) -> NatsClient:
    return await nats.connect(
        cluster.base["NATS_URL"],
        user=user,
        password=password,
        inbox_prefix=inbox_prefix(user),
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
    )


async def _log_in(cluster: Cluster, user: str, password: str) -> None:
    nc = await _connect(cluster, user, password)
    await nc.flush(timeout=2)
    await nc.close()


async def _publish(cluster: Cluster, user: str, subject: str) -> None:
    nc = await _connect(cluster, user, cluster.nats_passwords[user])
    await nc.publish(subject, b"{}")
    await nc.flush(timeout=2)
    await asyncio.sleep(0.2)  # the server's answer to the publish, before the connection goes
    await nc.close()


def test_a_wrong_password_and_a_forbidden_publish_show_in_the_broker_refusals(cluster: Cluster) -> None:
    asyncio.run(_log_in(cluster, "crm", cluster.nats_passwords["crm"]))
    assert cluster.broker_refusals() == []

    wrong = cluster.nats_passwords["ingest"]  # another service's password
    with pytest.raises(NatsError, match="Authorization Violation"):
        asyncio.run(_log_in(cluster, "crm", wrong))
    (refused,) = eventually(cluster.broker_refusals, "the refused login among the refusals")
    assert "authentication error" in refused
    assert 'User "crm"' in refused
    assert wrong not in refused

    asyncio.run(_publish(cluster, "ingest", "crm.deal.created"))  # crm's subject, not ingest's
    refusals = eventually(lambda: cluster.broker_refusals()[1:], "the refused publish among the refusals")
    assert len(refusals) == 1
    # nats-server 2.9 writes 'Publish Violation - User "ingest", Subject "…"'; 2.10 and later
    # name the user in the line's prefix ('"$G/user:ingest" - Publish Violation - Subject "…"').
    assert "Publish Violation" in refusals[0]
    assert '"ingest"' in refusals[0] or "user:ingest" in refusals[0]
    assert 'Subject "crm.deal.created"' in refusals[0]
