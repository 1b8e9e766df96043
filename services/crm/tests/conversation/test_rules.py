"""The conversation's rules on their own: every ordering and repetition of the same
input gives the same answer (the inbound tests check the same end to end)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm.conversation.rules import (
    DealSpan,
    StageOption,
    TrackedMessage,
    first_stage,
    first_touch_wins,
    newest_reaction,
    owning_deal,
    preview,
    track_responses,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def customer(id_: int, seconds: float, mid: str | None = None) -> TrackedMessage:
    return TrackedMessage(id_, "in", at(seconds), mid=mid or f"m{id_}")


def page(id_: int, seconds: float, *, failed: bool = False, mid: str | None = None) -> TrackedMessage:
    return TrackedMessage(id_, "out", at(seconds), failed=failed, mid=mid or f"m{id_}")


# ------------------------------------------------------------------ response tracking


def test_a_reply_answers_the_earliest_customer_message_since_the_previous_reply() -> None:
    history = [customer(1, 0), customer(2, 20), page(3, 50), customer(4, 100), page(5, 130), page(6, 140)]

    tracking = track_responses(history)

    assert tracking.response_seconds == {3: 50, 5: 30, 6: None}
    assert (tracking.first_response_seconds, tracking.first_response_at) == (50, at(50))
    assert tracking.awaiting_reply_since is None


def test_customer_messages_after_the_last_reply_await_a_reply_since_the_earliest() -> None:
    tracking = track_responses([customer(1, 0), page(2, 10), customer(3, 60), customer(4, 90)])

    assert tracking.awaiting_reply_since == at(60)
    assert tracking.first_response_seconds == 10


def test_a_failed_reply_answers_nobody_and_the_customer_keeps_waiting() -> None:
    tracking = track_responses([customer(1, 0), page(2, 10, failed=True), page(3, 40)])

    assert tracking.response_seconds == {2: None, 3: 40}
    assert (tracking.first_response_seconds, tracking.first_response_at) == (40, at(40))
    assert tracking.awaiting_reply_since is None


def test_a_page_message_before_any_customer_message_answers_nothing() -> None:
    tracking = track_responses([page(1, 0), customer(2, 30)])

    assert tracking.response_seconds == {1: None}
    assert tracking.first_response_seconds is None
    assert tracking.awaiting_reply_since == at(30)


def test_an_empty_history_awaits_nothing() -> None:
    tracking = track_responses([])

    assert tracking.response_seconds == {}
    assert tracking.awaiting_reply_since is None
    assert tracking.first_response_at is None


def test_at_the_same_millisecond_the_customer_message_comes_first() -> None:
    # Stored in the other order (the echo arrived first): the reply still answers it, in 0 s.
    tracking = track_responses([page(1, 5, mid="m_a"), customer(2, 5, mid="m_z")])

    assert tracking.response_seconds == {1: 0}
    assert tracking.awaiting_reply_since is None


def test_response_tracking_is_the_same_for_every_arrival_order() -> None:
    history = [customer(1, 0), page(2, 30), customer(3, 60), customer(4, 90), page(5, 150), customer(6, 200)]
    expected = track_responses(history)
    # A message is stored once (its Meta id is unique), so a repeat never reaches the rule.
    for order in itertools.permutations(history):
        assert track_responses(order) == expected
    assert expected.response_seconds == {2: 30, 5: 90}
    assert expected.awaiting_reply_since == at(200)


# --------------------------------------------------------------------- deal membership


def test_a_customer_message_belongs_to_the_open_deal() -> None:
    deals = [DealSpan(1, False, at(0), at(100)), DealSpan(2, True, at(500), at(600))]

    assert owning_deal(deals, at(700), outgoing=False) == 2


def test_a_customer_message_written_before_a_closed_deal_ended_belongs_to_it() -> None:
    deals = [DealSpan(1, False, at(0), at(100)), DealSpan(2, True, at(500), at(600))]

    assert owning_deal(deals, at(100), outgoing=False) == 1  # at its last message: still its own
    assert owning_deal(deals, at(50), outgoing=False) == 1
    assert owning_deal(deals, at(101), outgoing=False) == 2


def test_a_customer_message_with_only_closed_deals_opens_a_new_one() -> None:
    deals = [DealSpan(1, False, at(0), at(100))]

    assert owning_deal(deals, at(200), outgoing=False) is None
    assert owning_deal([], at(200), outgoing=False) is None


def test_an_echo_goes_to_the_open_deal_once_its_customer_wrote_else_follows_up_the_closed_one() -> None:
    closed, fresh = DealSpan(1, False, at(0), at(100)), DealSpan(2, True, at(500), at(500))

    assert owning_deal([closed, fresh], at(600), outgoing=True) == 2
    assert owning_deal([closed, fresh], at(500), outgoing=True) == 2
    assert owning_deal([closed, fresh], at(300), outgoing=True) == 1  # a follow-up before the customer wrote again
    assert owning_deal([closed], at(300), outgoing=True) == 1


def test_an_echo_in_a_conversation_without_customer_messages_goes_to_its_open_deal_or_opens_one() -> None:
    assert owning_deal([DealSpan(7, True, None, None)], at(10), outgoing=True) == 7
    assert owning_deal([], at(10), outgoing=True) is None


def test_membership_depends_on_meta_time_not_on_the_order_of_the_deals_given() -> None:
    deals = [DealSpan(1, False, at(0), at(100)), DealSpan(2, False, at(200), at(300)), DealSpan(3, True, at(400), None)]

    for moment, expected in ((50, 1), (250, 2), (301, 3), (1000, 3)):
        assert owning_deal(deals, at(moment), outgoing=False) == expected


# ------------------------------------------------------------------- first-touch lead


def test_the_earliest_referral_is_the_lead_source_whatever_the_order() -> None:
    ad = {"source": "ADS", "ad_id": "9", "timestamp": 1000}
    link = {"source": "SHORTLINK", "ref": "spring", "timestamp": 2000}

    assert first_touch_wins(None, link)
    assert first_touch_wins(link, ad)
    assert not first_touch_wins(ad, link)
    assert not first_touch_wins(ad, ad)  # a repeat changes nothing


def test_referrals_at_the_same_moment_keep_one_whatever_the_order() -> None:
    a = {"source": "ADS", "ad_id": "1", "timestamp": 1000}
    b = {"source": "ADS", "ad_id": "2", "timestamp": 1000}

    assert first_touch_wins(a, b) != first_touch_wins(b, a)
    winner = a if first_touch_wins(b, a) else b
    for order in itertools.permutations([a, b, a]):
        current = None
        for referral in order:
            if first_touch_wins(current, referral):
                current = referral
        assert current == winner


def test_a_referral_without_a_timestamp_counts_as_the_earliest() -> None:
    assert first_touch_wins({"source": "ADS", "timestamp": 5}, {"source": "SHORTLINK"})


# -------------------------------------------------------------------------- reactions


def _replay(events: list[tuple[str, int, str, str | None]]) -> tuple[dict[str, Any], dict[str, Any]]:
    reactions: dict[str, Any] = {}
    clock: dict[str, Any] = {}
    for reactor, at_ms, action, reaction in events:
        change = newest_reaction(reactions, clock, reactor, at_ms, action, reaction, "x" if reaction else None)
        if change is not None:
            reactions, clock = change.reactions, change.clock
    return reactions, clock


def test_the_newest_reaction_of_each_reactor_wins_in_any_order_and_repetition() -> None:
    events = [
        ("alice", 1000, "react", "like"),
        ("alice", 2000, "react", "love"),
        ("bob", 1500, "react", "laugh"),
        ("bob", 2500, "unreact", None),
        ("alice", 2000, "react", "love"),  # a repeat
    ]
    expected = _replay(events)

    assert all(_replay(list(order)) == expected for order in itertools.permutations(events))
    reactions, _ = expected
    assert reactions == {"alice": {"reaction": "love", "emoji": "x", "at": 2000}}


def test_an_older_or_repeated_reaction_changes_nothing() -> None:
    change = newest_reaction({}, {}, "alice", 2000, "react", "love", "x")
    assert change is not None

    assert newest_reaction(change.reactions, change.clock, "alice", 1000, "react", "like", "y") is None
    assert newest_reaction(change.reactions, change.clock, "alice", 2000, "react", "love", "x") is None


def test_reactions_at_the_same_millisecond_are_ordered_by_their_content() -> None:
    one = _replay([("alice", 1000, "react", "like"), ("alice", 1000, "unreact", None)])
    other = _replay([("alice", 1000, "unreact", None), ("alice", 1000, "react", "like")])

    assert one == other


# ------------------------------------------------------------------------- first stage


def stage(id_: int, key: str, position: int, *, active: bool = True) -> StageOption:
    return StageOption(id_, key, active, position)


def test_a_new_deal_opens_in_the_new_stage_wherever_it_is() -> None:
    assert first_stage([stage(1, "qualified", 0), stage(2, "new", 5), stage(3, "won", 9)]) == stage(2, "new", 5)


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([stage(1, "b", 2), stage(2, "a", 1)], 2),
        ([stage(1, "a", 1, active=False), stage(2, "b", 2)], 2),
        ([stage(1, "a", 3, active=False), stage(2, "b", 2, active=False)], 2),
    ],
)
def test_without_a_new_stage_the_first_active_one_by_position(stages: list[StageOption], expected: int) -> None:
    chosen = first_stage(stages)
    assert chosen is not None
    assert chosen.id == expected
    reordered = first_stage(list(reversed(stages)))
    assert reordered is not None
    assert reordered.id == expected


def test_no_stage_no_deal() -> None:
    assert first_stage([]) is None


# ------------------------------------------------------------------------------ preview


def test_a_message_reads_as_its_text_else_its_kind_and_deleted_ones_as_deleted() -> None:
    assert preview("text", "Hi!", False) == "Hi!"
    assert preview("image", None, False) == "[image]"
    assert preview("text", "Hi!", True) == "[deleted]"
