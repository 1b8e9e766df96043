"""Commands from other services (the Telegram bot's buttons) obey the API's rules."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import text

from jggl_common.contracts import ALREADY_ASSIGNED_TO_YOU, AssignDealCommand, SendMessageCommand

from .conftest import Crm, eventually


async def _rejections(crm: Crm, count: int = 1) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []

    async def arrived() -> bool:
        found[:] = await crm.events("crm.cmd.rejected", at_least=count)
        return len(found) >= count

    await eventually(arrived, 10, "crm.cmd.rejected")
    return found


async def test_a_manager_cannot_reply_on_another_managers_deal_through_a_command(crm: Crm) -> None:
    intruder, owner = await crm.user(), await crm.user()
    deal = await crm.deal(assignee=owner)
    command = SendMessageCommand(
        producer="notifier",
        data={"deal_id": deal.id, "acting_user_id": intruder.id, "text": "Let me", "idempotency_key": "tg-1"},
    )

    await crm.publish(command)
    (rejected,) = await _rejections(crm)

    assert rejected["data"]["command_id"] == command.id  # type: ignore[index]
    assert rejected["data"]["command_type"] == "crm.cmd.send_message"  # type: ignore[index]
    assert rejected["data"]["status"] == 404  # type: ignore[index]
    assert rejected["data"]["reason"] == "Deal not found"  # type: ignore[index]
    assert await crm.outgoing(deal) == []
    await asyncio.sleep(0.3)
    assert crm.fake.send_attempts() == []
    # Acknowledged, not retried: the consumer has nothing pending.
    info = await crm.js.consumer_info("CRM", "crm-cmd-send-message")
    assert info.num_pending == 0
    assert info.num_ack_pending == 0


async def test_the_deals_manager_replies_through_a_command_once_per_key(crm: Crm) -> None:
    owner = await crm.user()
    deal = await crm.deal(assignee=owner)
    data = {"deal_id": deal.id, "acting_user_id": owner.id, "text": "From Telegram", "idempotency_key": "tg-2"}

    await crm.publish(SendMessageCommand(producer="notifier", data=data))
    await crm.publish(SendMessageCommand(producer="notifier", data=data))  # a second tap, another event id

    async def one_sent() -> bool:
        rows = await crm.outgoing(deal)
        return len(rows) == 1 and rows[0]["status"] == "sent"

    await eventually(one_sent, 15, "the reply sent")
    await asyncio.sleep(0.3)
    (row,) = await crm.outgoing(deal)
    assert row["author_user_id"] == owner.id
    assert len(crm.fake.send_attempts()) == 1


async def test_a_command_outside_the_window_is_rejected_with_the_apis_sentence(crm: Crm) -> None:
    owner = await crm.user()
    deal = await crm.deal(assignee=owner, wrote_ago=timedelta(days=2))

    await crm.publish(
        SendMessageCommand(
            producer="notifier",
            data={"deal_id": deal.id, "acting_user_id": owner.id, "text": "late", "idempotency_key": "tg-3"},
        )
    )
    (rejected,) = await _rejections(crm)

    assert rejected["data"]["status"] == 409  # type: ignore[index]
    assert "24 hours" in str(rejected["data"]["reason"])  # type: ignore[index]


async def test_assigning_through_a_command_follows_the_apis_rules(crm: Crm) -> None:
    manager, colleague = await crm.user(), await crm.user()
    unassigned = await crm.deal()
    theirs = await crm.deal(assignee=colleague)

    await crm.publish(
        AssignDealCommand(
            producer="notifier",
            data={"deal_id": unassigned.id, "assignee_id": manager.id, "acting_user_id": manager.id},
        )
    )
    await crm.publish(
        AssignDealCommand(
            producer="notifier", data={"deal_id": theirs.id, "assignee_id": manager.id, "acting_user_id": manager.id}
        )
    )

    async def taken() -> bool:
        return bool((await crm.deal_row(unassigned))["assignee_id"] == manager.id)

    await eventually(taken, 10, "deal taken")
    (rejected,) = await _rejections(crm)
    assert rejected["data"]["deal_id"] == theirs.id  # type: ignore[index]
    assert rejected["data"]["status"] == 404  # type: ignore[index]
    assert (await crm.deal_row(theirs))["assignee_id"] == colleague.id
    updated = await crm.events("crm.deal.updated", at_least=1)
    assert [u["data"]["deal"]["id"] for u in updated] == [unassigned.id]


async def test_a_deactivated_user_cannot_act(crm: Crm) -> None:
    owner = await crm.user()
    deal = await crm.deal(assignee=owner)
    async with crm.sessions() as session:
        await session.execute(text("UPDATE users SET is_active = false WHERE id = :u"), {"u": owner.id})
        await session.commit()

    await crm.publish(
        SendMessageCommand(
            producer="notifier",
            data={"deal_id": deal.id, "acting_user_id": owner.id, "text": "hi", "idempotency_key": "tg-4"},
        )
    )
    (rejected,) = await _rejections(crm)

    assert rejected["data"]["status"] == 403  # type: ignore[index]
    assert await crm.outgoing(deal) == []


async def test_an_assignment_that_changes_nothing_is_answered(crm: Crm) -> None:
    manager, admin, colleague = await crm.user(), await crm.user("admin"), await crm.user()
    mine = await crm.deal(assignee=manager)
    admins = await crm.deal(assignee=admin)
    colleagues = await crm.deal(assignee=colleague)
    commands = [
        # A manager's Take of their own deal, an admin's of theirs, an admin assigning the assignee it has.
        AssignDealCommand(
            producer="notifier", data={"deal_id": mine.id, "assignee_id": manager.id, "acting_user_id": manager.id}
        ),
        AssignDealCommand(
            producer="notifier", data={"deal_id": admins.id, "assignee_id": admin.id, "acting_user_id": admin.id}
        ),
        AssignDealCommand(
            producer="notifier",
            data={"deal_id": colleagues.id, "assignee_id": colleague.id, "acting_user_id": admin.id},
        ),
    ]
    for command in commands:
        await crm.publish(command)

    answers = [cast(dict[str, Any], r["data"]) for r in await _rejections(crm, 3)]
    rejected = {answer["command_id"]: answer for answer in answers}
    assert [(rejected[c.id]["status"], rejected[c.id]["reason"]) for c in commands] == [
        (409, ALREADY_ASSIGNED_TO_YOU),
        (409, ALREADY_ASSIGNED_TO_YOU),
        (409, "The deal already has this assignee"),
    ]
    assert rejected[commands[0].id]["deal_id"] == mine.id
    assert rejected[commands[0].id]["acting_user_id"] == manager.id
    # Nothing changed: no deal event, the assignees as they were.
    assert await crm.events("crm.deal.updated") == []
    assert [(await crm.deal_row(deal))["assignee_id"] for deal in (mine, admins, colleagues)] == [
        manager.id,
        admin.id,
        colleague.id,
    ]
