"""The AI service's analyses reaching managers: real envelopes on a real JetStream, crm's
consumer applying them, and what the API shows and crm announces afterwards."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta

from sqlalchemy import text

from crm.analyses.order import AnalysisKey
from jggl_common.contracts import utcnow

from .conftest import NOTES, Crm, analysis, failure


async def test_an_analysis_fills_the_deal_once_with_its_timeline_entry_and_event(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager, contact_name="Maria Lopez")
    completed = analysis(deal, temperature="warm", score=8, language="es")

    await crm.publish(completed)
    await crm.settled()

    shown = await crm.deal_json(deal)
    assert {key: shown[key] for key in shown if key.startswith("ai_") and key != "ai_analyzed_at"} == {
        "ai_summary": completed.data.result.summary,
        "ai_intent": "purchase",
        "ai_temperature": "warm",
        "ai_score": 8,
        "ai_source": "gemini",
        "ai_next_action": "Confirm the size and send the delivery options.",
        "ai_language": "es",
        "ai_manager_notes": NOTES.model_dump(),
        "ai_version": 1,
        "ai_model": "gemini-2.5-flash",
    }
    assert shown["ai_analyzed_at"] is not None
    # A manager who works the deal sees it too, in the list as well.
    listed = await crm.get("/api/deals", user=manager)
    assert [(item["id"], item["ai_temperature"]) for item in listed["items"]] == [(deal.id, "warm")]

    (entry,) = await crm.activities(deal)
    assert entry["actor_label"] == "AI"
    assert entry["actor_user_id"] is None
    assert entry["data"] == {
        "analysis_id": completed.data.analysis_id,
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "intent": "purchase",
        "temperature": "warm",
        "score": 8,
        "version": 1,
    }

    (updated,) = await crm.about("crm.deal.updated", deal)
    assert updated["producer"] == "crm"
    assert updated["data"]["actor_label"] == "AI"
    assert updated["data"]["actor_user_id"] is None
    assert updated["data"]["deal"]["assignee_id"] == manager.id
    assert updated["data"]["deal"]["contact"]["display_name"] == "Maria Lopez"
    changes = updated["data"]["changes"]
    assert changes["ai_temperature"] == [None, "warm"]
    assert changes["ai_score"] == [None, 8]
    assert changes["ai_source"] == [None, "gemini"]
    assert changes["ai_version"] == [None, 1]
    assert set(changes) >= {"ai_summary", "ai_intent", "ai_next_action", "ai_language", "ai_manager_notes"}
    assert await crm.events("crm.deal.hot_lead") == []


async def test_a_redelivered_analysis_changes_and_announces_nothing(crm: Crm) -> None:
    deal = await crm.deal()
    completed = analysis(deal, temperature="hot")
    await crm.publish(completed)
    await crm.settled()
    before = await crm.deal_json(deal)

    # The same analysis again: as a redelivery reaches the handler, and as a second message.
    assert await crm.service.completed(completed) is False
    await crm.publish(completed.model_copy(update={"id": "another-delivery-of-the-same-analysis"}))
    await crm.settled()

    assert await crm.deal_json(deal) == before
    assert len(await crm.activities(deal)) == 1
    assert len(await crm.about("crm.deal.updated", deal)) == 1
    assert len(await crm.about("crm.deal.hot_lead", deal)) == 1
    assert (await crm.rows("SELECT count(*) AS n FROM outbox"))[0]["n"] == 2

    # Even if crm forgot it had applied it (a database restored from before), the events
    # it announces again carry the same ids, and JetStream keeps one of each.
    async with crm.sessions() as session:
        await session.execute(
            text("UPDATE deals SET ai_version = NULL, ai_analysis_id = NULL, ai_temperature = NULL WHERE id = :d"),
            {"d": deal.id},
        )
        await session.execute(text("DELETE FROM outbox"))
        await session.commit()
    await crm.publish(completed.model_copy(update={"id": "yet-another-delivery"}))
    await crm.settled()
    assert len(await crm.activities(deal)) == 2  # it was applied again
    assert (await crm.rows("SELECT count(*) AS n FROM outbox"))[0]["n"] == 2
    assert len(await crm.about("crm.deal.updated", deal)) == 1
    assert len(await crm.about("crm.deal.hot_lead", deal)) == 1


async def test_an_older_analysis_arriving_after_a_newer_one_is_ignored(crm: Crm) -> None:
    deal = await crm.deal()
    newer = analysis(deal, version=5, summary="Ready to pay today.", temperature="hot", score=9)
    older = analysis(deal, version=3, summary="Just browsing.", temperature="cold", score=4)

    await crm.publish(newer, older)
    await crm.settled()

    shown = await crm.deal_json(deal)
    assert (shown["ai_version"], shown["ai_summary"], shown["ai_temperature"], shown["ai_score"]) == (
        5,
        "Ready to pay today.",
        "hot",
        9,
    )
    assert [entry["data"]["version"] for entry in await crm.activities(deal)] == [5]
    assert len(await crm.about("crm.deal.updated", deal)) == 1

    # A later version does replace it.
    await crm.publish(analysis(deal, version=6, summary="Paid, waiting for delivery.", temperature="warm"))
    await crm.settled()
    shown = await crm.deal_json(deal)
    assert (shown["ai_version"], shown["ai_summary"]) == (6, "Paid, waiting for delivery.")
    assert [entry["data"]["version"] for entry in await crm.activities(deal)] == [5, 6]


async def test_gemini_replaces_the_heuristic_at_the_same_version(crm: Crm) -> None:
    deal = await crm.deal()
    await crm.publish(analysis(deal, version=4, provider="heuristic", summary="Heuristic guess.", score=None))
    await crm.settled()
    shown = await crm.deal_json(deal)
    assert (shown["ai_source"], shown["ai_model"], shown["ai_summary"]) == ("heuristic", None, "Heuristic guess.")

    await crm.publish(analysis(deal, version=4, provider="gemini", summary="Gemini's reading.", score=6))
    await crm.settled()

    shown = await crm.deal_json(deal)
    assert (shown["ai_source"], shown["ai_model"], shown["ai_summary"], shown["ai_score"]) == (
        "gemini",
        "gemini-2.5-flash",
        "Gemini's reading.",
        6,
    )
    assert [entry["data"]["provider"] for entry in await crm.activities(deal)] == ["heuristic", "gemini"]
    updates = await crm.about("crm.deal.updated", deal)
    assert [update["data"]["changes"]["ai_source"] for update in updates] == [
        [None, "heuristic"],
        ["heuristic", "gemini"],
    ]


async def test_the_heuristic_never_replaces_gemini_at_the_same_version(crm: Crm) -> None:
    deal = await crm.deal()
    await crm.publish(
        analysis(deal, version=4, provider="gemini", summary="Gemini's reading."),
        analysis(deal, version=4, provider="heuristic", summary="Heuristic guess."),
    )
    await crm.settled()

    shown = await crm.deal_json(deal)
    assert (shown["ai_source"], shown["ai_summary"]) == ("gemini", "Gemini's reading.")
    assert [entry["data"]["provider"] for entry in await crm.activities(deal)] == ["gemini"]
    assert len(await crm.about("crm.deal.updated", deal)) == 1

    # A heuristic analysis of a longer transcript is newer, though.
    await crm.publish(analysis(deal, version=5, provider="heuristic", summary="Heuristic, two messages later."))
    await crm.settled()
    assert (await crm.deal_json(deal))["ai_source"] == "heuristic"


async def test_a_hot_lead_is_announced_when_the_deal_turns_hot_and_not_again_while_it_stays_hot(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager, contact_name="Oleg")
    await crm.publish(analysis(deal, version=1, temperature="warm"))
    await crm.settled()
    assert await crm.about("crm.deal.hot_lead", deal) == []

    turned_hot = analysis(
        deal, version=2, temperature="hot", summary="Wants two jackets today.", next_action="Send the invoice."
    )
    await crm.publish(turned_hot)
    await crm.settled()
    await crm.publish(analysis(deal, version=3, temperature="hot", summary="Still keen."))
    await crm.settled()

    (hot,) = await crm.about("crm.deal.hot_lead", deal)
    assert hot["type"] == "crm.deal.hot_lead"
    assert hot["data"]["summary"] == "Wants two jackets today."
    assert hot["data"]["intent"] == "purchase"
    assert hot["data"]["next_action"] == "Send the invoice."
    assert hot["data"]["provider"] == "gemini"
    assert hot["data"]["analysis_version"] == 2
    assert hot["data"]["deal"]["assignee_id"] == manager.id
    assert hot["data"]["deal"]["contact"]["display_name"] == "Oleg"
    assert len(await crm.about("crm.deal.updated", deal)) == 3

    # A lead that cooled down and heats up again is news again.
    await crm.publish(analysis(deal, version=4, temperature="warm"), analysis(deal, version=5, temperature="hot"))
    await crm.settled()
    assert [event["data"]["analysis_version"] for event in await crm.about("crm.deal.hot_lead", deal)] == [2, 5]


async def test_analyses_in_any_order_and_at_once_end_with_the_newest(crm: Crm) -> None:
    deal = await crm.deal()
    analyses = [
        analysis(deal, version=version, provider=provider, summary=f"v{version} {provider}", temperature=temperature)
        for version in range(1, 7)
        for provider, temperature in (("heuristic", "cold"), ("gemini", "hot" if version % 2 else "warm"))
    ]
    random.Random(7).shuffle(analyses)

    await asyncio.gather(*(crm.publish(envelope) for envelope in analyses))
    await crm.settled()

    shown = await crm.deal_json(deal)
    assert (shown["ai_version"], shown["ai_source"], shown["ai_summary"]) == (6, "gemini", "v6 gemini")
    # Every analysis that was applied left one timeline entry and one event, each newer than the last.
    entries = await crm.activities(deal)
    keys = [AnalysisKey(e["data"]["version"], e["data"]["provider"], e["data"]["analysis_id"]).rank() for e in entries]
    assert keys == sorted(set(keys))
    assert keys[-1] == (6, 1, 61)
    assert len(await crm.about("crm.deal.updated", deal)) == len(entries)


async def test_the_search_finds_a_deal_by_its_ai_summary(crm: Crm) -> None:
    by_summary = await crm.deal(contact_name="Pavel")
    by_message = await crm.deal(contact_name="Irina", last_message_text="Do you sell a квадрокоптер too?")
    await crm.deal(contact_name="Sergei", last_message_text="Hello")
    assert await crm.get("/api/search", params={"q": "квадрокоптер"}) != {"items": []}  # the message matches already

    await crm.publish(analysis(by_summary, summary="Хочет купить квадрокоптер с камерой", intent="availability"))
    await crm.settled()

    found = (await crm.get("/api/search", params={"q": "квадрокоптер"}))["items"]
    # The AI summary weighs more than a message.
    assert [hit["id"] for hit in found] == [by_summary.id, by_message.id]
    assert "<mark>квадрокоптер</mark>" in found[0]["snippet"]
    assert found[0]["ai_summary"] == "Хочет купить квадрокоптер с камерой"
    assert [hit["id"] for hit in (await crm.get("/api/search", params={"q": "availability"}))["items"]] == [
        by_summary.id
    ]


async def test_the_managers_statistics_show_their_average_ai_score(crm: Crm) -> None:
    anna = await crm.user(name="Anna")
    boris = await crm.user(name="Boris")
    rescored, scored, unscored, long_ago = [await crm.deal(assignee=anna) for _ in range(4)]
    nobodys = await crm.deal()
    await crm.publish(
        analysis(rescored, version=1, score=2),
        analysis(rescored, version=2, score=9),  # the deal's latest analysis counts
        analysis(scored, score=6),
        analysis(unscored, score=None),  # nobody has replied yet
        analysis(long_ago, score=1, analyzed_at=utcnow() - timedelta(days=40)),
        analysis(nobodys, score=3),
    )
    await crm.settled()

    rows = {row["name"]: row for row in (await crm.get("/api/stats/managers"))["items"]}
    assert (rows["Anna"]["ai_scored_deals"], rows["Anna"]["ai_score_average"]) == (2, 7.5)
    assert (rows["Boris"]["ai_scored_deals"], rows["Boris"]["ai_score_average"]) == (0, None)
    assert rows["Anna"]["open_deals"] == 4  # the other figures are still there
    longer = {
        row["name"]: row
        for row in (await crm.get("/api/stats/managers", params={"from": (utcnow() - timedelta(days=60)).isoformat()}))[
            "items"
        ]
    }
    assert (longer["Anna"]["ai_scored_deals"], longer["Anna"]["ai_score_average"]) == (3, 5.33)
    # A manager sees their own.
    own = (await crm.get("/api/stats/managers", user=boris))["items"]
    assert [(row["name"], row["ai_scored_deals"]) for row in own] == [("Boris", 0)]


async def test_a_failure_the_ai_gives_up_on_is_in_the_system_log_and_the_deal_is_untouched(crm: Crm) -> None:
    deal = await crm.deal()
    before = await crm.deal_json(deal)

    await crm.publish(failure(deal, will_retry=True, attempts=1), failure(deal, will_retry=False, attempts=5))
    await crm.settled()
    # Delivered again (a new message with the same content): still one entry.
    await crm.publish(failure(deal, will_retry=False, attempts=5))
    await crm.settled()

    assert await crm.deal_json(deal) == before
    assert await crm.activities(deal, kind="ai_analysis") == []
    assert await crm.events("crm.>") == []
    (entry,) = (await crm.get("/api/system-log", params={"source": "ai.analysis"}))["items"]
    assert entry["kind"] == "integration_failure"
    assert f"deal {deal.id}" in entry["message"]
    assert "503 UNAVAILABLE" in entry["message"]
    assert entry["details"]["attempts"] == 5
    assert entry["details"]["deal_id"] == deal.id


async def test_an_analysis_of_an_unknown_deal_is_acknowledged_not_retried(crm: Crm) -> None:
    deal = await crm.deal()
    gone = deal.model_copy(update={"id": 987_654})  # a deal deleted since, say

    await crm.publish(analysis(gone), analysis(deal))
    await crm.settled()

    info = await crm.js.consumer_info("AI", "crm-ai-analyses")
    assert info.delivered.consumer_seq == 2  # each delivered once: nothing was retried
    assert await crm.events("dlq.>") == []
    assert (await crm.deal_json(deal))["ai_version"] == 1
    assert [event["data"]["deal"]["id"] for event in await crm.events("crm.deal.updated")] == [deal.id]


async def test_a_malformed_analysis_goes_to_the_dead_letters(crm: Crm) -> None:
    deal = await crm.deal()
    broken = analysis(deal).model_dump(mode="json")
    broken["data"]["result"]["temperature"] = "lukewarm"
    ack = await crm.publisher.publish_raw(
        [("ai.analysis.completed", json.dumps(broken).encode(), {"Nats-Msg-Id": "broken-1"})]
    )
    crm.published = max(crm.published, int(ack[0].seq or 0))
    await crm.settled()

    (letter,) = await crm.events("dlq.>")
    assert letter["data"]["original_subject"] == "ai.analysis.completed"
    assert "malformed ai.analysis.completed" in letter["data"]["error"]
    assert (await crm.deal_json(deal))["ai_version"] is None
