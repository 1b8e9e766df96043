"""Announcing what applying items did: the deal and message events of each unit.

Events are built after every change of the transaction was made and the deals were
recomputed, from rows this transaction sees (the deals in one read for all units), and
carry ids derived from what they announce, so a repeat of the same item stages the same
ids (a no-op). The caller stages them in its transaction: they are published after the
commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from crm.conversation import replies
from crm.conversation import repository as core
from crm.deals.events import contact_ref, row_key, snapshot
from crm.inbound.changes import Unit
from jggl_common.contracts import (
    DealCreated,
    DealUpdated,
    DealUpdatedData,
    Envelope,
    MessageReceived,
    MessageReceivedData,
    stable_event_id,
)

__all__ = ["PRODUCER", "events_of", "stage_sent"]

PRODUCER = "crm"
_E = TypeVar("_E", bound=Envelope)
_Deals = dict[int, tuple[core.DealRow, core.ContactRow, str]]


async def events_of(session: AsyncSession, units: list[Unit]) -> list[list[Envelope]]:
    """The events of each unit: ``crm.deal.created`` for the deals it opened,
    ``crm.deal.updated`` for the lead sources it changed, ``crm.message.received`` for the
    customers' messages it stored (unless unsent meanwhile)."""
    wanted = {
        deal_id
        for unit in units
        for deal_id in (*unit.created_deals, *unit.updated_deals, *(deal for _, deal in unit.received))
        if not (deal_id in unit.known_deals and unit.contact_created)
    }
    deals = await core.read_deals(session, wanted)
    return [await _events(session, unit, deals) for unit in units]


def _deal(unit: Unit, deals: _Deals, deal_id: int) -> tuple[core.DealRow, core.ContactRow, str]:
    known = unit.known_deals.get(deal_id)
    if known is not None and unit.contact_created:
        # A contact created by this unit has no profile yet: nothing to read back.
        contact = core.ContactRow(unit.contact_id, unit.ctx.platform, unit.ctx.customer_id, None, None, None)
        return known[0], contact, known[1]
    return deals[deal_id]


async def _events(session: AsyncSession, unit: Unit, deals: _Deals) -> list[Envelope]:
    def announce(contract: Callable[..., _E], key: str, data: Any) -> _E:
        return contract(id=stable_event_id(key), producer=PRODUCER, correlation_id=unit.correlation, data=data)

    events: list[Envelope] = []
    for deal_id in unit.created_deals:
        deal, contact, stage_key = _deal(unit, deals, deal_id)
        key = f"crm.deal.created:{row_key(deal_id, deal.created_at)}"
        events.append(announce(DealCreated, key, snapshot(deal, contact, stage_key)))
    for deal_id, changes in unit.updated_deals.items():
        if deal_id in unit.created_deals:
            continue  # the creation event already carries the final state
        deal, contact, stage_key = _deal(unit, deals, deal_id)
        key = f"crm.deal.updated:{row_key(deal_id, deal.created_at)}:{unit.ctx.dedupe_key}"
        data = DealUpdatedData(deal=snapshot(deal, contact, stage_key), changes=changes, actor_label="system")
        events.append(announce(DealUpdated, key, data))
    for message_id, deal_id in unit.received:
        message = unit.known_messages.get(message_id) or await core.load_message(session, message_id)
        if message is None or message.is_deleted or message.mid is None:
            continue  # unsent before we even stored it: nothing to notify about
        deal, contact, stage_key = _deal(unit, deals, deal_id)
        received = MessageReceivedData(
            message_id=message_id,
            mid=message.mid,
            deal_id=deal_id,
            conversation_id=message.conversation_id,
            kind=message.kind,
            text=message.text,
            attachments=list(message.attachments),
            sent_at=message.sent_at,
            is_first_message=deal_id in unit.created_deals,
            deal_stage=stage_key,
            assignee_id=deal.assignee_id,
            contact=contact_ref(contact),
        )
        key = f"crm.message.received:{row_key(message_id, message.created_at)}"
        events.append(announce(MessageReceived, key, received))
    return events


async def stage_sent(session: AsyncSession, unit: Unit) -> list[str]:
    """Announce the replies the unit recorded as sent (replies typed in Meta's apps, and
    ours whose echo beat the Send API's answer); returns the staged event ids."""
    ids = []
    for message_id in unit.sent:
        event_id = await replies.stage_sent(session, message_id, unit.correlation)
        if event_id is not None:
            ids.append(event_id)
    return ids
