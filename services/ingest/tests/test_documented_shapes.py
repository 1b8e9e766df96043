"""Every example payload of Meta's Messenger and Instagram webhook references
(:mod:`jggl_sandbox.meta_documented`) is accepted: 200, its events stored once, a
repeat of the same body stores nothing more."""

from __future__ import annotations

import pytest

from jggl_sandbox.meta_documented import DOCUMENTED_SHAPES, DocumentedShape

from .conftest import IngestStream, RunningIngest


@pytest.mark.parametrize("shape", DOCUMENTED_SHAPES, ids=lambda shape: shape.name)
async def test_a_documented_shape_is_accepted_and_published_once(
    ingest: RunningIngest, stream: IngestStream, shape: DocumentedShape
) -> None:
    filled = shape.fill()
    body = ingest.kit.encode(filled.body)

    first = await ingest.post_meta(body)
    again = await ingest.post_meta(body)  # Meta retrying the same delivery

    assert first.status_code == 200, first.text
    assert first.json()["events"] == shape.events
    assert again.status_code == 200, again.text
    stored = await stream.meta_events(filled.page_id)
    assert len(stored) == shape.events
    for event in stored:
        assert event.subject == f"ingest.meta.{shape.object}.{event.data['kind']}"
        timestamp = event.data["timestamp"]
        assert timestamp is None or timestamp >= 10**12, "Meta's times are stored in milliseconds"


def test_the_examples_cover_every_documented_field() -> None:
    sources = {shape.source.rsplit("/", 1)[-1] for shape in DOCUMENTED_SHAPES}
    assert {
        "messages",
        "message-echoes",
        "messaging_postbacks",
        "message-reactions",
        "message-reads",
        "message-deliveries",
        "message-edits",
        "messaging_referrals",
        "messaging_optins",
        "messaging_handovers",
        "standby",
        "messaging_policy_enforcement",
        "messaging_account_linking",
        "webhooks",  # Instagram messaging
        "examples",  # Instagram comments, mentions, story insights
    } <= sources
