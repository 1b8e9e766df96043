"""The broker as a trust boundary: a real nats-server started with deploy/nats/auth.conf,
each service connecting as its own user. What a service does works with its credentials;
what belongs to another service is refused by the broker and leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from jggl_common.bus import inbox_prefix
from jggl_common.e2e import APP_KEY
from jggl_common.live_settings import LiveSettings
from jggl_common.streams import ensure_streams
from jggl_common.testing import NATS_AUTH_CONFIG, NATS_USERS, start_nats_server
from jggl_sandbox.nats_credentials import NatsCredential

pytestmark = pytest.mark.xdist_group("broker-permissions")

REFUSED_WITHIN = 1.0
"""Seconds to wait for an answer the broker never gives to a refused request."""


@dataclass
class Broker:
    url: str
    passwords: dict[str, str]
    log_file: Path
    clients: list[NatsClient] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    async def connect(self, user: str, *, password: str | None = None) -> NatsClient:
        """A connection as ``user`` (its own password unless given), its errors kept."""
        seen = self.errors.setdefault(user, [])

        async def on_error(exc: Exception) -> None:
            seen.append(str(exc))

        nc = await nats.connect(
            self.url,
            user=user,
            password=password if password is not None else self.passwords[user],
            inbox_prefix=inbox_prefix(user),
            error_cb=on_error,
            allow_reconnect=False,
            connect_timeout=2,
        )
        self.clients.append(nc)
        return nc

    def refusals(self, user: str) -> list[str]:
        """The permission violations the broker told ``user`` of (lower case, as nats-py
        reports them)."""
        return [e.lower() for e in self.errors.get(user, []) if "permissions violation" in e.lower()]


@pytest.fixture
def server(tmp_path: Path, nats_credentials: dict[str, NatsCredential]) -> Iterator[tuple[str, dict[str, str], Path]]:
    """nats-server with auth.conf, given the users' hashes; the services' passwords beside it."""
    hashes = {user: credential.bcrypt_hash for user, credential in nats_credentials.items()}
    log_file = tmp_path / "nats.log"
    proc, port = start_nats_server(tmp_path / "js", config=NATS_AUTH_CONFIG, password_hashes=hashes, log_file=log_file)
    try:
        passwords = {user: credential.password for user, credential in nats_credentials.items()}
        yield f"nats://127.0.0.1:{port}", passwords, log_file
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest_asyncio.fixture
async def broker(server: tuple[str, dict[str, str], Path]) -> AsyncIterator[Broker]:
    """The server with what crm declares at its start: the streams and the settings bucket
    (holding one sealed secret)."""
    url, passwords, log_file = server
    found = Broker(url, passwords, log_file)
    crm = await found.connect("crm")
    await ensure_streams(crm.jetstream())
    live = LiveSettings(crm, APP_KEY)
    await live.start()
    await live.put("meta.app_secret", "the-real-app-secret", secret=True)
    await live.stop()
    try:
        yield found
    finally:
        for nc in found.clients:
            if not nc.is_closed:
                await nc.close()


async def stored(nc: NatsClient, stream: str, subject: str) -> int:
    """How many messages ``stream`` holds on ``subject``."""
    info = await nc.jetstream().stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


def command(kind: str, acting_user_id: int) -> bytes:
    return json.dumps(
        {
            "id": f"forged-{kind}",
            "type": kind,
            "version": 1,
            "producer": "notifier",
            "data": {"acting_user_id": acting_user_id},
        }
    ).encode()


# --------------------------------------------------------------------------- who may connect


async def test_a_client_without_credentials_is_turned_away(broker: Broker) -> None:
    with pytest.raises((NatsError, TimeoutError)):
        await nats.connect(broker.url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)


async def test_a_wrong_password_is_turned_away(broker: Broker) -> None:
    with pytest.raises((NatsError, TimeoutError)):
        await broker.connect("crm", password=broker.passwords["ingest"])


@pytest.mark.parametrize("user", NATS_USERS)
async def test_every_service_reads_the_streams_and_its_live_settings(broker: Broker, user: str) -> None:
    nc = await broker.connect(user)
    await ensure_streams(nc.jetstream())  # as declared: nothing to change, only read
    live = LiveSettings(nc, APP_KEY)
    await live.start()
    try:
        assert live.get("meta.app_secret") == "the-real-app-secret"
    finally:
        await live.stop()
    assert broker.refusals(user) == []


# --------------------------------------------------------------------------- what each may publish

ALLOWED = [
    ("ingest", "INGEST", "ingest.meta.page.message"),
    ("ingest", "INGEST", "ingest.telegram.update"),
    ("crm", "CRM", "crm.deal.created"),
    ("crm", "CRM", "crm.cmd.rejected"),
    ("crm", "SCHEDULER", "scheduler.cmd.run_job"),
    ("notifier", "CRM", "crm.cmd.send_message"),
    ("notifier", "CRM", "crm.cmd.assign_deal"),
    ("notifier", "NOTIFIER", "notifier.job.finished"),
    ("ai", "AI", "ai.analysis.completed"),
    ("ai", "AI", "ai.job.finished"),
    ("scheduler", "SCHEDULER", "scheduler.tick.sla_check"),
    ("scheduler", "SCHEDULER", "scheduler.job.updated"),
    ("crm", "DLQ", "dlq.crm.ingest.meta.page.message"),
    ("notifier", "DLQ", "dlq.notifier.crm.deal.created"),
]

REFUSED = [
    # Replying to customers as the admin: only crm's own API and the notifier give commands.
    ("ingest", "CRM", "crm.cmd.send_message"),
    ("ai", "CRM", "crm.cmd.send_message"),
    ("scheduler", "CRM", "crm.cmd.assign_deal"),
    # Past the webhook signature check: only ingest publishes webhooks.
    ("notifier", "INGEST", "ingest.meta.page.message"),
    ("crm", "INGEST", "ingest.meta.page.message"),
    ("ai", "INGEST", "ingest.telegram.update"),
    # Events are their producer's: nobody else speaks for crm, ai or the scheduler.
    ("notifier", "CRM", "crm.deal.updated"),
    ("ingest", "CRM", "crm.message.received"),
    ("notifier", "AI", "ai.analysis.completed"),
    ("ingest", "SCHEDULER", "scheduler.tick.sla_check"),
    # Admins' commands to the scheduler come from crm only.
    ("scheduler", "SCHEDULER", "scheduler.cmd.run_job"),
    ("notifier", "SCHEDULER", "scheduler.cmd.set_job_enabled"),
    # A service writes only its own dead letters (crm's system log trusts the service name).
    ("ai", "DLQ", "dlq.crm.ingest.meta.page.message"),
]


@pytest.mark.parametrize(("user", "stream", "subject"), ALLOWED)
async def test_a_service_publishes_its_own_subjects(broker: Broker, user: str, stream: str, subject: str) -> None:
    nc = await broker.connect(user)
    ack = await nc.jetstream().publish(subject, command(subject, 1), timeout=5)
    assert ack.stream == stream
    assert await stored(nc, stream, subject) == 1
    assert broker.refusals(user) == []


@pytest.mark.parametrize(("user", "stream", "subject"), REFUSED)
async def test_a_service_cannot_publish_what_belongs_to_another(
    broker: Broker, user: str, stream: str, subject: str
) -> None:
    nc = await broker.connect(user)
    with pytest.raises((NatsError, TimeoutError)):  # no acknowledgement: the broker dropped the publish
        await nc.jetstream().publish(subject, command(subject, 1), timeout=REFUSED_WITHIN)
    crm = await broker.connect("crm")
    assert await stored(crm, stream, subject) == 0
    assert any(subject.lower() in e for e in broker.refusals(user)), broker.errors.get(user)


# --------------------------------------------------------------------------- the settings bucket


@pytest.mark.parametrize("user", [u for u in NATS_USERS if u != "crm"])
async def test_only_crm_writes_live_settings(broker: Broker, user: str) -> None:
    nc = await broker.connect(user)
    kv = await nc.jetstream().key_value("SETTINGS")
    forged = json.dumps({"secret": False, "value": "attacker-known-secret"}).encode()
    with pytest.raises((NatsError, TimeoutError)):
        await asyncio.wait_for(kv.put("meta.app_secret", forged), REFUSED_WITHIN * 3)
    crm = await broker.connect("crm")
    live = LiveSettings(crm, APP_KEY)
    await live.start()
    try:
        assert live.get("meta.app_secret") == "the-real-app-secret"
    finally:
        await live.stop()
    assert broker.refusals(user)


@pytest.mark.parametrize("user", [u for u in NATS_USERS if u != "crm"])
async def test_only_crm_declares_streams(broker: Broker, user: str) -> None:
    nc = await broker.connect(user)
    js = nc.jetstream()
    config = (await js.stream_info("INGEST")).config
    config.max_age = 1.0  # would throw every webhook away after a second
    with pytest.raises((NatsError, TimeoutError)):
        await asyncio.wait_for(js.update_stream(config), REFUSED_WITHIN * 3)
    with pytest.raises((NatsError, TimeoutError)):
        await asyncio.wait_for(js.delete_stream("CRM"), REFUSED_WITHIN * 3)
    assert (await js.stream_info("INGEST")).config.max_age == 7 * 24 * 3600
    assert broker.refusals(user)


# --------------------------------------------------------------------------- what each may read


async def _crm_command_consumer(broker: Broker) -> None:
    crm = await broker.connect("crm")
    await crm.jetstream().add_consumer(
        "CRM",
        ConsumerConfig(
            name="crm-cmd-send-message",
            durable_name="crm-cmd-send-message",
            filter_subject="crm.cmd.send_message",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
        ),
    )
    notifier = await broker.connect("notifier")
    await notifier.jetstream().publish("crm.cmd.send_message", command("crm.cmd.send_message", 7), timeout=5)


async def test_crm_pulls_its_own_commands(broker: Broker) -> None:
    await _crm_command_consumer(broker)
    crm = await broker.connect("crm")
    sub = await crm.jetstream().pull_subscribe("crm.cmd.send_message", durable="crm-cmd-send-message", stream="CRM")
    (msg,) = await sub.fetch(1, timeout=5)
    await msg.ack()
    assert json.loads(msg.data)["data"]["acting_user_id"] == 7


@pytest.mark.parametrize("user", ["ai", "ingest", "scheduler"])
async def test_no_other_service_takes_crm_commands(broker: Broker, user: str) -> None:
    await _crm_command_consumer(broker)
    nc = await broker.connect(user)
    js = nc.jetstream()
    # Neither a consumer of its own on the commands...
    with pytest.raises((NatsError, TimeoutError)):
        await asyncio.wait_for(
            js.add_consumer("CRM", ConsumerConfig(name=f"{user}-spy", filter_subject="crm.cmd.>")), REFUSED_WITHIN * 3
        )
    # ...nor pulling (and so taking away) from crm's consumer...
    sub = await js.pull_subscribe_bind("crm-cmd-send-message", stream="CRM")
    with pytest.raises((NatsError, TimeoutError)):
        await sub.fetch(1, timeout=REFUSED_WITHIN)
    # ...nor listening on the subjects or on crm's inbox.
    await nc.subscribe("crm.cmd.>")
    await nc.subscribe(inbox_prefix("crm") + ".>")
    await nc.flush()
    await asyncio.sleep(0.2)
    refused = " ".join(broker.refusals(user))
    assert "crm.cmd.>" in refused
    assert inbox_prefix("crm").lower() in refused
    crm = await broker.connect("crm")
    info = await crm.jetstream().consumer_info("CRM", "crm-cmd-send-message")
    assert info.num_pending == 1
    assert info.num_ack_pending == 0
    with pytest.raises(NotFoundError):
        await crm.jetstream().consumer_info("CRM", f"{user}-spy")


async def test_ai_reads_crm_messages_but_not_commands(broker: Broker) -> None:
    ai = await broker.connect("ai")
    js = ai.jetstream()
    sub = await js.pull_subscribe(
        "crm.message.>",
        durable="ai-transcripts",
        stream="CRM",
        config=ConsumerConfig(filter_subject="crm.message.>", ack_policy=AckPolicy.EXPLICIT),
    )
    crm = await broker.connect("crm")
    await crm.jetstream().publish("crm.message.received", b"{}", timeout=5)
    (msg,) = await sub.fetch(1, timeout=5)
    await msg.ack()
    with pytest.raises((NatsError, TimeoutError)):  # the same consumer name, widened to every crm subject
        await asyncio.wait_for(
            js.add_consumer(
                "CRM", ConsumerConfig(name="ai-transcripts", durable_name="ai-transcripts", filter_subject="crm.>")
            ),
            REFUSED_WITHIN * 3,
        )
    assert (await crm.jetstream().consumer_info("CRM", "ai-transcripts")).config.filter_subject == "crm.message.>"


async def test_a_service_started_before_crm_waits_for_the_settings_bucket(
    server: tuple[str, dict[str, str], Path],
) -> None:
    url, passwords, log_file = server
    found = Broker(url, passwords, log_file)
    try:
        ingest = await found.connect("ingest")
        live = LiveSettings(ingest, APP_KEY)
        starting = asyncio.create_task(live.start(timeout=30))
        await asyncio.sleep(6)  # ingest's own attempt to create the bucket has been refused by now
        assert not starting.done()
        assert found.refusals("ingest")
        crm = await found.connect("crm")
        await ensure_streams(crm.jetstream())
        writer = LiveSettings(crm, APP_KEY)
        await writer.start()
        await writer.put("meta.app_secret", "set-after-ingest-started", secret=True)
        await writer.stop()
        await asyncio.wait_for(starting, 30)
        try:
            assert live.get("meta.app_secret") == "set-after-ingest-started"
        finally:
            await live.stop()
    finally:
        for nc in found.clients:
            await nc.close()
