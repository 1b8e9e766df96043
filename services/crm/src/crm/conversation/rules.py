"""The rules of a conversation, as pure functions: no database, no clock.

The repository loads what a rule needs, calls it and saves what it decides, so each
rule is written once and tested on its own (``services/crm/tests/conversation``). Each
rule's answer depends only on Meta's timestamps and the rows' contents, never on the
order in which the items arrived, so a repeated or late item ends in the same state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "DealSpan",
    "ReactionChange",
    "ResponseTracking",
    "StageOption",
    "TrackedMessage",
    "first_stage",
    "first_touch_wins",
    "history_order",
    "newest_reaction",
    "owning_deal",
    "preview",
    "track_responses",
]


@dataclass(frozen=True, slots=True)
class TrackedMessage:
    """A message of a deal as response tracking sees it."""

    id: int
    direction: str  # "in": the customer's; "out": the page's
    sent_at: datetime
    failed: bool = False  # a reply the Send API refused answers nobody
    mid: str | None = None


def history_order(message: TrackedMessage) -> tuple[datetime, str, str, int]:
    """A deal's history in Meta's time; at the same millisecond the customer's message
    comes first ("in" < "out"), then by Meta id, then by row id."""
    return message.sent_at, message.direction, message.mid or "", message.id


@dataclass(frozen=True, slots=True)
class ResponseTracking:
    """What a deal's history says about its replies."""

    response_seconds: dict[int, int | None]  # per outgoing message: how long it answered after
    awaiting_reply_since: datetime | None
    first_response_seconds: int | None
    first_response_at: datetime | None


def track_responses(messages: Iterable[TrackedMessage]) -> ResponseTracking:
    """Response tracking of a deal, from its whole history in :func:`history_order`.

    A reply (an outgoing message that did not fail) answers the customer's earliest
    message since the previous reply: its ``response_seconds`` is the gap (``None`` when
    nothing was waiting); the first such reply is the deal's first response. Customer
    messages after the last reply make the deal await a reply since the earliest of them.
    A failed reply answers nothing and keeps the customer waiting.
    """
    waiting_since: datetime | None = None
    first: tuple[int, datetime] | None = None
    seconds: dict[int, int | None] = {}
    for message in sorted(messages, key=history_order):
        if message.direction == "in":
            if waiting_since is None:
                waiting_since = message.sent_at
            continue
        if message.failed:
            seconds[message.id] = None
            continue
        response = int((message.sent_at - waiting_since).total_seconds()) if waiting_since is not None else None
        if response is not None and first is None:
            first = (response, message.sent_at)
        seconds[message.id] = response
        waiting_since = None
    return ResponseTracking(
        response_seconds=seconds,
        awaiting_reply_since=waiting_since,
        first_response_seconds=first[0] if first else None,
        first_response_at=first[1] if first else None,
    )


@dataclass(frozen=True, slots=True)
class DealSpan:
    """A deal of a conversation as message membership sees it: open or not, and when its
    customer wrote first and last (Meta's time; ``None`` before any customer message)."""

    id: int
    is_open: bool
    first_in: datetime | None
    last_in: datetime | None


def owning_deal(deals: Sequence[DealSpan], at: datetime, *, outgoing: bool) -> int | None:
    """The deal a message written at ``at`` belongs to; ``None``: a deal is to be opened.

    ``deals`` are the conversation's, oldest first. Deals follow each other in time, so
    membership is decided by Meta's timestamps, not by arrival order:

    * a closed deal whose customer wrote at or after ``at`` owns the message (it was
      written before the deal closed and only delivered late);
    * otherwise the open deal owns a customer's message;
    * a page's message (echo) goes to the open deal once that deal's customer has
      written, else it is a follow-up on the latest closed deal; only a conversation
      with no deal at all gets a deal opened by the page.
    """
    closed = [deal for deal in deals if not deal.is_open]
    open_ = next((deal for deal in deals if deal.is_open), None)
    for deal in closed:
        if deal.last_in is not None and deal.last_in >= at:
            return deal.id
    if not outgoing:
        return open_.id if open_ is not None else None
    if open_ is not None and (open_.first_in is None or open_.first_in <= at):
        return open_.id
    if closed:
        return closed[-1].id
    return open_.id if open_ is not None else None


def _canonical(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def first_touch_wins(current: Mapping[str, Any] | None, candidate: Mapping[str, Any]) -> bool:
    """Whether referral ``candidate`` replaces the deal's ``current`` one as its lead source.

    First touch wins: the earliest referral by Meta's ``timestamp`` (a missing one counts
    as 0); at the same timestamp the smaller canonical JSON, so any order of the same
    referrals keeps the same one. A repeat of the current referral changes nothing.
    """
    if current is None:
        return True
    current_key = (int(current.get("timestamp") or 0), _canonical(current))
    return (int(candidate.get("timestamp") or 0), _canonical(candidate)) < current_key


@dataclass(frozen=True, slots=True)
class ReactionChange:
    """A message's reactions after a reaction event, and the per-reactor clock."""

    reactions: dict[str, Any]
    clock: dict[str, Any]


def newest_reaction(
    reactions: Mapping[str, Any],
    clock: Mapping[str, Any],
    reactor: str,
    at_ms: int,
    action: str,
    reaction: str | None,
    emoji: str | None,
) -> ReactionChange | None:
    """A reaction (``react``) or its removal (``unreact``) applied to a message, newest wins.

    ``reactions`` holds what each reactor shows now; ``clock`` remembers the newest event
    applied per reactor as ``[at_ms, "action:reaction:emoji"]`` (time, then content as a
    tie-break), so any order of the same events ends in the same state. ``None``: an
    event as new or newer from the reactor is applied already, nothing changes.
    """
    stamp = [at_ms, f"{action}:{reaction or ''}:{emoji or ''}"]
    previous = clock.get(reactor)
    if previous is not None and (int(previous[0]), str(previous[1])) >= (at_ms, stamp[1]):
        return None
    new_clock = {**clock, reactor: stamp}
    new_reactions = dict(reactions)
    if action == "react":
        new_reactions[reactor] = {"reaction": reaction, "emoji": emoji, "at": at_ms}
    else:
        new_reactions.pop(reactor, None)
    return ReactionChange(new_reactions, new_clock)


@dataclass(frozen=True, slots=True)
class StageOption:
    """A pipeline stage as deal opening sees it."""

    id: int
    key: str
    is_active: bool
    position: int


def first_stage(stages: Iterable[StageOption]) -> StageOption | None:
    """The stage a new deal opens in: ``new`` if the pipeline has it, else the first
    active stage by position, else the first by position; ``None`` without stages."""
    return min(stages, key=lambda s: (s.key != "new", not s.is_active, s.position, s.id), default=None)


def preview(kind: str, text: str | None, is_deleted: bool) -> str:
    """How a message reads in a deal list: its text, else its kind in brackets."""
    if is_deleted:
        return "[deleted]"
    if text:
        return text
    return f"[{kind}]"
