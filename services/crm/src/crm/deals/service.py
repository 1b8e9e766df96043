"""Working deals: listing, reading, moving through the pipeline, assigning, closing.

Never commits: the request (or message) entry point owns the transaction. Every change
leaves a timeline entry and stages a ``crm.deal.updated`` event in the same transaction,
so the timeline, the event and the change are all there or none is.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import Activity, Contact, Deal, Message, User
from crm.tasks.service import follow_deal_assignee, release_tasks_of
from crm.web.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from crm.web.pagination import CursorCodec, InvalidCursor
from jggl_common import outbox
from jggl_common.contracts import DealUpdated, DealUpdatedData, utcnow
from jggl_common.logs import correlation_id

from .access import is_admin
from .events import load_snapshot, snapshot
from .repository import DealFilters, DealRepository, DealRow, sort_value
from .schemas import DealDetail, DealPatch

PRODUCER = "crm"
_NOT_FOUND = "Deal not found"
_ONE_OPEN_DEAL = "uq_deals_one_open_per_conversation"


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a changed value (amounts keep their precision as strings)."""
    return str(value) if isinstance(value, Decimal) else value


def _parse_position(field: str, raw: list[Any]) -> tuple[Any, int]:
    if len(raw) != 2 or not isinstance(raw[1], int) or isinstance(raw[1], bool):
        raise InvalidCursor("malformed cursor")
    value, after_id = raw
    if value is None:
        if field == "created_at":
            raise InvalidCursor("malformed cursor")
        return None, after_id
    if not isinstance(value, str):
        raise InvalidCursor("malformed cursor")
    try:
        return (Decimal(value) if field == "amount" else datetime.fromisoformat(value)), after_id
    except (ValueError, InvalidOperation):
        raise InvalidCursor("malformed cursor") from None


async def list_deals(
    session: AsyncSession,
    user: User,
    cursors: CursorCodec,
    filters: DealFilters,
    *,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[DealRow], str | None]:
    """A page of the deals ``user`` may see, and the cursor of the next page (None at the end)."""
    field = sort.lstrip("-")
    kind = f"deals:{sort}"
    after = None
    if cursor is not None:
        try:
            after = _parse_position(field, cursors.decode(cursor, kind))
        except InvalidCursor as exc:
            raise BadRequest(f"Invalid cursor: {exc}") from None
    rows = await DealRepository(session).page(user, filters, sort=sort, after=after, limit=limit + 1)
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1][0]
    value = sort_value(last, field)
    position = [value.isoformat() if isinstance(value, datetime) else _plain(value), last.id]
    return rows, cursors.encode(kind, position)


async def unread_counts(session: AsyncSession, rows: list[DealRow]) -> dict[int, int]:
    """The unread count of each deal of a page (deals with none are absent)."""
    return await DealRepository(session).unread_counts([row[0] for row in rows])


async def detail(session: AsyncSession, row: DealRow) -> DealDetail:
    """The deal as ``GET /api/deals/{id}`` answers it: with its unread count and reply window."""
    deal = row[0]
    assert deal.id is not None
    repository = DealRepository(session)
    unread = (await repository.unread_counts([deal])).get(deal.id, 0)
    return DealDetail.of(row, unread=unread, last_inbound_at=await repository.last_inbound_at(deal.conversation_id))


async def mark_read(session: AsyncSession, user: User, deal_id: int) -> tuple[DealRow, list[str]]:
    """``user`` read the deal's conversation: its customer messages are no longer unread, for
    everyone. Announced as ``crm.deal.updated`` (change ``manager_read_at``) so every open
    inbox clears the count; reading what was read already writes and announces nothing."""
    repository = DealRepository(session)
    row = await repository.get_visible(user, deal_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    deal, contact, stage, _ = row
    moved = await repository.mark_read(deal)
    if moved is None:
        return row, []
    event_id = await _announce(session, deal, contact, stage.key, {"manager_read_at": moved}, user)
    return row, [event_id]


async def get_deal(session: AsyncSession, user: User, deal_id: int) -> DealRow:
    """A deal ``user`` may see; :class:`NotFound` otherwise (existence is not revealed)."""
    row = await DealRepository(session).get_visible(user, deal_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    return row


async def list_messages(
    session: AsyncSession, user: User, cursors: CursorCodec, deal_id: int, *, limit: int, before: str | None
) -> tuple[list[Message], str | None]:
    """The latest messages of a visible deal, oldest first, and the cursor of older ones."""
    await get_deal(session, user, deal_id)
    kind = f"messages:{deal_id}"
    position = None
    if before is not None:
        try:
            raw = cursors.decode(before, kind)
            if len(raw) != 2 or not isinstance(raw[0], str) or not isinstance(raw[1], int):
                raise InvalidCursor("malformed cursor")
            position = (datetime.fromisoformat(raw[0]), raw[1])
        except (InvalidCursor, ValueError) as exc:
            raise BadRequest(f"Invalid cursor: {exc}") from None
    messages = await DealRepository(session).messages(deal_id, limit=limit + 1, before=position)
    next_cursor = None
    if len(messages) > limit:
        messages = messages[:limit]
        oldest = messages[-1]
        next_cursor = cursors.encode(kind, [oldest.sent_at.isoformat(), oldest.id])
    messages.reverse()
    return messages, next_cursor


async def list_activities(session: AsyncSession, user: User, deal_id: int, *, limit: int) -> list[Activity]:
    """The latest timeline entries of a visible deal, oldest first."""
    await get_deal(session, user, deal_id)
    activities = list(await DealRepository(session).activities(deal_id, limit=limit))
    activities.reverse()
    return activities


async def user_names(session: AsyncSession, user_ids: set[int]) -> dict[int, str]:
    """The names of these users (those that exist), by id."""
    if not user_ids:
        return {}
    rows = await session.execute(select(col(User.id), col(User.name)).where(col(User.id).in_(user_ids)))
    return {user_id: name for user_id, name in rows.all() if user_id is not None}


async def _announce(
    session: AsyncSession,
    deal: Deal,
    contact: Contact,
    stage_key: str,
    changes: dict[str, tuple[Any, Any]],
    actor: User,
) -> str:
    event = DealUpdated(
        producer=PRODUCER,
        correlation_id=correlation_id(),
        data=DealUpdatedData(
            deal=snapshot(deal, contact, stage_key),
            changes={field: (_plain(old), _plain(new)) for field, (old, new) in changes.items()},
            actor_user_id=actor.id,
        ),
    )
    return await outbox.stage(session, event)


async def _check_assignee(session: AsyncSession, actor: User, current: int | None, new: int | None) -> None:
    if is_admin(actor):
        if new is not None:
            assignee = await session.get(User, new)
            if assignee is None or not assignee.is_active:
                raise Unprocessable("assignee_id must be an active user")
        return
    # A manager may take a deal or let go of their own, never hand one to someone else.
    if new is not None and new != actor.id:
        raise Forbidden("Managers can assign deals only to themselves")
    if new is None and current != actor.id:
        raise Forbidden("Managers can only let go of their own deals")


async def update_deal(session: AsyncSession, actor: User, deal_id: int, patch: DealPatch) -> tuple[DealRow, list[str]]:
    """Apply ``patch``; returns the deal and the ids of the events it staged."""
    repository = DealRepository(session)
    row = await repository.get_visible(actor, deal_id, for_update=True)
    if row is None:
        raise NotFound(_NOT_FOUND)
    deal, contact, stage, assignee_name = row
    fields = patch.model_fields_set
    changes: dict[str, tuple[Any, Any]] = {}
    timeline: list[tuple[str, dict[str, Any]]] = []

    if "stage" in fields and patch.stage is not None and patch.stage != stage.key:
        new_stage = await repository.stage_by_key(patch.stage)
        if new_stage is None or not new_stage.is_active:
            raise Unprocessable(f"There is no active stage '{patch.stage}'")
        changes["stage"] = (stage.key, new_stage.key)
        timeline.append(("stage_changed", {"from": stage.key, "to": new_stage.key}))
        assert new_stage.id is not None
        deal.stage_id, stage = new_stage.id, new_stage

    if "amount" in fields and patch.amount != deal.amount:
        changes["amount"] = (deal.amount, patch.amount)
        timeline.append(("amount_changed", {"from": _plain(deal.amount), "to": _plain(patch.amount)}))
        deal.amount = patch.amount

    if "comment" in fields and patch.comment != deal.comment:
        changes["comment"] = (deal.comment, patch.comment)
        timeline.append(("comment_changed", {"from": deal.comment, "to": patch.comment}))
        deal.comment = patch.comment

    if "assignee_id" in fields and patch.assignee_id != deal.assignee_id:
        await _check_assignee(session, actor, deal.assignee_id, patch.assignee_id)
        changes["assignee_id"] = (deal.assignee_id, patch.assignee_id)
        timeline.append(("assigned", {"from": deal.assignee_id, "to": patch.assignee_id}))
        deal.assignee_id = patch.assignee_id
        assignee_name = None if patch.assignee_id is None else await _user_name(session, patch.assignee_id)

    new_status = patch.status if patch.status is not None else deal.status
    if "lost_reason" in fields and new_status != "lost":
        raise Unprocessable("lost_reason goes only with a lost deal")
    if new_status != deal.status:
        if new_status == "open":
            if await repository.has_other_open_deal(deal.conversation_id, deal_id):
                raise Conflict(_REOPEN_CONFLICT)
            timeline.append(("reopened", {"from": deal.status}))
            deal.closed_at = None
            deal.lost_reason = None
        else:
            deal.closed_at = utcnow()
            deal.lost_reason = patch.lost_reason.strip() if new_status == "lost" and patch.lost_reason else None
            timeline.append((new_status, {"reason": deal.lost_reason} if new_status == "lost" else {}))
        changes["status"] = (deal.status, new_status)
        deal.status = new_status
    elif new_status == "lost" and patch.lost_reason is not None and patch.lost_reason.strip() != deal.lost_reason:
        changes["lost_reason"] = (deal.lost_reason, patch.lost_reason.strip())
        timeline.append(("lost_reason_changed", {"from": deal.lost_reason, "to": patch.lost_reason.strip()}))
        deal.lost_reason = patch.lost_reason.strip()

    if not changes:
        return (deal, contact, stage, assignee_name), []
    deal.updated_at = utcnow()
    for kind, data in timeline:
        repository.add_activity(deal_id, kind, actor, data)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another open deal appeared on the conversation between our check and the write.
        if _ONE_OPEN_DEAL in str(exc.orig):
            raise Conflict(_REOPEN_CONFLICT) from None
        raise
    if "assignee_id" in changes:
        # After the deal's own entries, so its timeline reads: assigned, then the tasks that followed.
        await follow_deal_assignee(session, actor, deal_id, deal.assignee_id)
    event_id = await _announce(session, deal, contact, stage.key, changes, actor)
    return (deal, contact, stage, assignee_name), [event_id]


_REOPEN_CONFLICT = "This customer's conversation already has another open deal; close it before reopening this one"


async def _user_name(session: AsyncSession, user_id: int) -> str | None:
    user = await session.get(User, user_id)
    return user.name if user else None


async def take_deal(session: AsyncSession, actor: User, deal_id: int) -> tuple[DealRow, list[str]]:
    """Assign an unassigned deal to ``actor``; :class:`Conflict` if someone else has it.

    The assignment is one conditional UPDATE, so two managers clicking at the same
    instant cannot both win.
    """
    repository = DealRepository(session)
    taken = await repository.assign_if_unassigned(deal_id, actor.id)  # type: ignore[arg-type]
    row = await repository.get_visible(actor, deal_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    deal, contact, stage, _ = row
    if not taken:
        if deal.assignee_id == actor.id:
            return row, []
        raise Conflict("This deal is already assigned to someone else")
    repository.add_activity(deal_id, "assigned", actor, {"from": None, "to": actor.id})
    await follow_deal_assignee(session, actor, deal_id, actor.id)
    event_id = await _announce(session, deal, contact, stage.key, {"assignee_id": (None, actor.id)}, actor)
    return row, [event_id]


async def release_deals_of(session: AsyncSession, actor: User, user_id: int) -> list[str]:
    """Return a user's open deals to the unassigned pool, and their tasks to nobody; ids of the events it staged."""
    repository = DealRepository(session)
    event_ids = []
    for deal_id in await repository.unassign_open_deals_of(user_id):
        repository.add_activity(deal_id, "assigned", actor, {"from": user_id, "to": None, "reason": "deactivated"})
        deal_snapshot = await load_snapshot(session, deal_id)
        event = DealUpdated(
            producer=PRODUCER,
            correlation_id=correlation_id(),
            data=DealUpdatedData(deal=deal_snapshot, changes={"assignee_id": (user_id, None)}, actor_user_id=actor.id),
        )
        event_ids.append(await outbox.stage(session, event))
    await release_tasks_of(session, actor, user_id)
    return event_ids
