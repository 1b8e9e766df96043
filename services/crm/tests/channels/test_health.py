"""The channel health job on the scheduler's ticks, against the Graph fake with crm's real
Graph client: what admins see in ``/api/channels`` and the system log, the events the
notifier turns into alerts, and what is left alone (throttling, quiet weekends)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from crm.channels.health import ChannelHealth
from crm.sla import BusinessHours
from jggl_common.contracts import ChannelHealthChanged

from .conftest import APP_SECRET, DEFAULT_TOKEN, World

HEALTH = ChannelHealthChanged.subject


def codes(items: list[dict[str, Any]]) -> list[str]:
    return [item["code"] for item in items]


async def test_a_healthy_page_is_ok_and_announces_nothing(world: World) -> None:
    channel = await world.add_channel()
    report = await world.tick(1)
    assert report["status"] == "done"
    assert report["counts"] == {"checked": 1, "problems": 0, "recovered": 0}
    seen = await world.channel(channel.id)
    assert seen["health_status"] == "ok"
    assert seen["health_problems"] == []
    assert seen["health_checked_at"] is not None
    assert seen["token_expires_at"] is None  # debug_token said 0: never
    assert seen["needs_reauth"] is False
    assert await world.events(HEALTH) == []
    assert await world.system_log() == []
    # Both checks went to Meta: the app token for debug_token, the page token for the subscription.
    [debug] = world.graph.fake.calls("/debug_token")
    assert debug.token == f"{world.graph.fake.app_id}|{APP_SECRET}"
    [apps] = world.graph.fake.calls(f"/{channel.external_id}/subscribed_apps")
    assert apps.token == DEFAULT_TOKEN


async def test_an_unsubscribed_page_is_announced_once_and_so_is_its_recovery(world: World) -> None:
    channel = await world.add_channel()
    quiet = await world.add_channel(name="Other page")
    world.graph.fake.health.unsubscribe(channel.external_id)

    first = await world.tick(1)
    assert first["counts"] == {"checked": 2, "problems": 1, "recovered": 0}
    [event] = await world.events(HEALTH)
    assert event["data"]["channel_id"] == channel.id
    assert event["data"]["external_id"] == channel.external_id
    assert event["data"]["channel_name"] == "Shop & Co"
    assert event["data"]["status"] == "problem"
    assert codes(event["data"]["problems"]) == ["not_subscribed"]
    assert "new messages will not arrive" in event["data"]["problems"][0]["message"]
    assert event["data"]["previous_problems"] == []
    assert event["data"]["recovered"] is False
    seen = await world.channel(channel.id)
    assert seen["health_status"] == "problem"
    assert codes(seen["health_problems"]) == ["not_subscribed"]
    assert (await world.channel(quiet.id))["health_status"] == "ok"
    [logged] = await world.system_log()
    assert logged["source"] == "meta.channel_health"
    assert "Shop & Co" in logged["message"]
    assert "subscribed_apps is empty" in logged["message"]
    assert logged["details"]["channel_id"] == channel.id
    assert REGISTRY.get_sample_value("crm_channels_with_problems", {"problem": "not_subscribed"}) == 1

    # Still unsubscribed: nothing new to say.
    second = await world.tick(2)
    assert second["counts"] == {"checked": 2, "problems": 1, "recovered": 0}
    assert len(await world.events(HEALTH)) == 1
    assert len(await world.system_log()) == 1

    world.graph.fake.health.subscribe(channel.external_id)
    third = await world.tick(3)
    assert third["counts"] == {"checked": 2, "problems": 0, "recovered": 1}
    events = await world.events(HEALTH)
    assert len(events) == 2
    recovery = events[1]["data"]
    assert recovery["recovered"] is True
    assert recovery["status"] == "ok"
    assert recovery["problems"] == []
    assert codes(recovery["previous_problems"]) == ["not_subscribed"]
    assert (await world.channel(channel.id))["health_status"] == "ok"
    logged_again = await world.system_log()
    assert len(logged_again) == 2
    assert "recovered" in logged_again[1]["message"]
    assert REGISTRY.get_sample_value("crm_channels_with_problems", {"problem": "not_subscribed"}) == 0


async def test_a_page_subscribed_to_another_app_or_without_messages_is_not_subscribed(world: World) -> None:
    other = await world.add_channel(name="Other app")
    fieldless = await world.add_channel(name="No messages")
    world.graph.fake.health.subscribe(other.external_id, app_id="555")
    world.graph.fake.health.subscribe(fieldless.external_id, ("messaging_postbacks",))
    await world.tick(1)
    assert "is not subscribed" in (await world.channel(other.id))["health_problems"][0]["message"]
    assert "without the messages field" in (await world.channel(fieldless.id))["health_problems"][0]["message"]


async def test_a_token_expiring_soon_is_a_problem_and_a_later_expiry_is_shown(world: World) -> None:
    soon = await world.add_channel(name="Soon")
    later = await world.add_channel(name="Later")
    soon_token, later_token = "soon-token", "later-token"
    for channel, token in ((soon, soon_token), (later, later_token)):
        put = await world.client.put(
            f"/api/channels/{channel.id}/token", json={"token": token}, headers=world.headers()
        )
        assert put.status_code == 200, put.text
    in_three_days = int(time.time()) + 3 * 86400
    world.graph.fake.health.expire(soon_token, in_three_days)
    world.graph.fake.health.expire(later_token, time.time() + 60 * 86400)

    report = await world.tick(1)
    assert report["counts"]["problems"] == 1
    seen = await world.channel(soon.id)
    assert codes(seen["health_problems"]) == ["token_expiring"]
    expires = datetime.fromtimestamp(in_three_days, UTC)
    assert f"expires on {expires:%Y-%m-%d %H:%M} UTC (in 3 days)" in seen["health_problems"][0]["message"]
    assert datetime.fromisoformat(seen["token_expires_at"]) == expires
    fine = await world.channel(later.id)
    assert fine["health_status"] == "ok"
    assert fine["token_expires_at"] is not None
    [event] = await world.events(HEALTH)
    assert event["data"]["channel_id"] == soon.id
    assert codes(event["data"]["problems"]) == ["token_expiring"]


async def test_a_refused_token_flags_the_channel_once_and_a_new_token_recovers_it(world: World) -> None:
    channel = await world.add_channel()
    world.graph.fake.health.invalidate(DEFAULT_TOKEN)

    await world.tick(1)
    seen = await world.channel(channel.id)
    assert seen["needs_reauth"] is True
    assert codes(seen["health_problems"]) == ["token_invalid"]
    assert "changed their password" in seen["health_problems"][0]["message"]
    [reauth] = await world.events("crm.channel.needs_reauth")
    assert reauth["data"]["channel_id"] == channel.id
    assert reauth["data"]["error_code"] == 190
    [health] = await world.events(HEALTH)
    assert codes(health["data"]["problems"]) == ["token_invalid"]

    await world.tick(2)  # still refused: flagged already, announced already
    assert len(await world.events("crm.channel.needs_reauth")) == 1
    assert len(await world.events(HEALTH)) == 1
    [logged] = await world.system_log()
    assert "Meta refuses the page access token" in logged["message"]

    put = await world.client.put(
        f"/api/channels/{channel.id}/token", json={"token": "fresh-page-token"}, headers=world.headers()
    )
    assert put.status_code == 200, put.text
    assert put.json()["needs_reauth"] is False
    assert put.json()["has_own_token"] is True
    await world.tick(3)
    seen = await world.channel(channel.id)
    assert seen["health_status"] == "ok"
    events = await world.events(HEALTH)
    assert events[-1]["data"]["recovered"] is True
    assert codes(events[-1]["data"]["previous_problems"]) == ["token_invalid"]
    [apps] = world.graph.fake.calls(f"/{channel.external_id}/subscribed_apps")[-1:]
    assert apps.token == "fresh-page-token"


async def test_a_token_refused_on_the_subscription_call_is_found_without_app_credentials(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("META_APP_SECRET")  # no app credentials: validity only, from subscribed_apps
    channel = await world.add_channel()
    world.graph.fake.health.invalidate(DEFAULT_TOKEN)
    await world.tick(1)
    seen = await world.channel(channel.id)
    assert codes(seen["health_problems"]) == ["token_invalid"]
    assert seen["needs_reauth"] is True
    assert world.graph.fake.calls("/debug_token") == []


async def test_throttling_and_outages_are_not_problems(world: World) -> None:
    healthy = await world.add_channel(name="Healthy")
    broken = await world.add_channel(name="Broken")
    world.graph.fake.health.unsubscribe(broken.external_id)
    await world.tick(1)
    assert len(await world.events(HEALTH)) == 1

    # Meta throttles every call of the next run (and one answers 503 with no error object).
    world.graph.fake.fail_next(2, code=4, match="debug_token", regain_minutes=1)
    world.graph.fake.fail_next(1, code=80006, match="subscribed_apps")
    world.graph.fake.fail_next(1, code=2, match="subscribed_apps", http_status=503)
    world.graph.fake.health.subscribe(broken.external_id)  # fixed meanwhile, but Meta cannot say so yet
    report = await world.tick(2)
    assert report["status"] == "done"
    assert report["counts"] == {"checked": 2, "problems": 1, "recovered": 0}
    assert (await world.channel(healthy.id))["health_status"] == "unknown"
    kept = await world.channel(broken.id)
    assert kept["health_status"] == "problem"
    assert codes(kept["health_problems"]) == ["not_subscribed"]  # not forgotten, not recovered
    assert len(await world.events(HEALTH)) == 1
    assert len(await world.system_log()) == 1

    await world.tick(3)  # Meta answers again
    assert (await world.channel(healthy.id))["health_status"] == "ok"
    assert (await world.channel(broken.id))["health_status"] == "ok"
    events = await world.events(HEALTH)
    assert [e["data"]["recovered"] for e in events] == [False, True]


async def test_a_wrong_app_secret_is_a_failed_check_not_a_refused_page_token(world: World) -> None:
    channel = await world.add_channel()
    world.graph.fake.app_secret = "rotated-at-meta"
    await world.tick(1)
    seen = await world.channel(channel.id)
    assert codes(seen["health_problems"]) == ["token_check_failed"]
    assert "Invalid OAuth access token signature" in seen["health_problems"][0]["message"]
    assert seen["needs_reauth"] is False
    assert await world.events("crm.channel.needs_reauth") == []


async def test_silence_counts_only_business_hours(world: World) -> None:
    # Friday 17:00 UTC was the last webhook; the business works 09:00-18:00 UTC on weekdays.
    friday = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    channel = await world.add_channel(last_webhook_at=friday)
    hours = BusinessHours.from_settings("09:00-18:00", "UTC")
    health = ChannelHealth(world.outbox, world.settings)

    saturday_night = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)  # 30 hours later, one of them in business hours
    counts = await health.run(hours, now=saturday_night)
    assert counts.as_counts() == {"checked": 1, "problems": 0, "recovered": 0}
    assert (await world.channel(channel.id))["health_status"] == "ok"

    monday_noon = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # 1 + 3 business hours: still fine
    assert (await health.run(hours, now=monday_noon)).problems == 0

    monday_afternoon = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # 1 + 5 = 6 business hours: silent
    assert (await health.run(hours, now=monday_afternoon)).problems == 1
    seen = await world.channel(channel.id)
    assert codes(seen["health_problems"]) == ["no_webhooks"]
    assert "for 6.0 business hours (the last one at 2026-12-04 17:00 UTC)" in seen["health_problems"][0]["message"]
    [event] = await world.events(HEALTH)
    assert event["data"]["checked_at"].startswith("2026-12-07T14:00:00")
    assert (await health.run(hours, now=monday_afternoon + timedelta(hours=1))).problems == 1  # still silent
    assert len(await world.events(HEALTH)) == 1
    [logged] = await world.system_log()
    assert "No webhook from this page for 6.0 business hours" in logged["message"]

    # A webhook arrives: the next check finds the page talking again.
    await world.execute(
        "UPDATE channels SET last_webhook_at = :at WHERE id = :id",
        at=monday_afternoon + timedelta(minutes=5),
        id=channel.id,
    )
    assert (await health.run(hours, now=monday_afternoon + timedelta(hours=2))).recovered == 1
    assert [e["data"]["recovered"] for e in await world.events(HEALTH)] == [False, True]


async def test_inactive_channels_are_not_checked(world: World) -> None:
    channel = await world.add_channel()
    off = await world.client.patch(f"/api/channels/{channel.id}", json={"is_active": False}, headers=world.headers())
    assert off.status_code == 200, off.text
    report = await world.tick(1)
    assert report["counts"]["checked"] == 0
    assert (await world.channel(channel.id))["health_status"] == "unknown"
    assert world.graph.fake.calls() == []
