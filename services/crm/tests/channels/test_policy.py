"""The health check's findings as pure functions of Meta's answers (no HTTP, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm.channels.health import Finding, Problem, combine, read_debug_token, read_subscriptions, refused
from crm.graph import GraphError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def test_debug_token_findings() -> None:
    never = read_debug_token({"is_valid": True, "expires_at": 0}, NOW, WEEK)
    assert (never.problems, never.token_valid, never.expires_at, never.expiry_known) == ((), True, None, True)
    later = read_debug_token({"is_valid": True, "expires_at": int((NOW + timedelta(days=30)).timestamp())}, NOW, WEEK)
    assert later.problems == ()
    assert later.expires_at == NOW + timedelta(days=30)
    soon = read_debug_token({"is_valid": True, "expires_at": int((NOW + timedelta(hours=5)).timestamp())}, NOW, WEEK)
    assert [p.code for p in soon.problems] == ["token_expiring"]
    assert "(in less than a day)" in soon.problems[0].message
    invalid = read_debug_token(
        {"is_valid": False, "error": {"code": 190, "subcode": 460, "message": "Password changed"}}, NOW, WEEK
    )
    assert invalid.token_valid is False
    assert invalid.problems[0].message.startswith(
        "Meta refuses the page access token: Password changed (code 190, subcode 460)."
    )
    assert read_debug_token({}, NOW, WEEK).token_valid is False  # no is_valid: not valid


def test_subscription_findings() -> None:
    ours = {"id": "42", "subscribed_fields": ["messages", "messaging_postbacks"]}
    assert read_subscriptions([ours], "42").problems == ()
    assert read_subscriptions([ours], "").problems == ()  # no app id configured: any app will do
    assert [p.code for p in read_subscriptions([], "42").problems] == ["not_subscribed"]
    assert "(7)" in read_subscriptions([{"id": "1"}], "7").problems[0].message
    assert "messages field" in read_subscriptions([{"id": "42", "subscribed_fields": []}], "42").problems[0].message


def test_meta_errors_unknown_when_passing_problems_otherwise() -> None:
    assert refused("token", GraphError("throttled", code=4)).known is False
    assert refused("subscription", GraphError("unreachable")).known is False
    assert refused("subscription", GraphError("down", http_status=503)).known is False
    auth = refused("subscription", GraphError("Invalid OAuth access token", code=190))
    assert (auth.known, auth.token_valid, auth.problems[0].code) == (False, False, "token_invalid")
    failed = refused("token", GraphError("Invalid OAuth access token signature.", code=190))
    assert (failed.known, failed.token_valid, failed.problems[0].code) == (True, None, "token_check_failed")


def test_unknown_items_keep_their_earlier_problems_and_known_ones_replace_theirs() -> None:
    previous = [
        {"code": "not_subscribed", "message": "was not subscribed"},
        {"code": "token_expiring", "message": "was expiring"},
        {"code": "no_webhooks", "message": "was silent"},
    ]
    findings = [
        Finding("token", known=False),
        Finding("subscription"),
        Finding("silence", (Problem("no_webhooks", "silent for 7.0 business hours"),)),
    ]
    status, problems = combine(previous, findings)
    assert status == "problem"
    assert [(p.code, p.message) for p in problems] == [
        ("token_expiring", "was expiring"),
        ("no_webhooks", "silent for 7.0 business hours"),
    ]
    assert combine([], [Finding("token", known=False), Finding("subscription"), Finding("silence")]) == (
        "unknown",
        [],
    )
    assert combine(previous, [Finding("token"), Finding("subscription"), Finding("silence")]) == ("ok", [])
