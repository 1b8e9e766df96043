"""Commands from other services, applied with the HTTP API's own rules.

The notifier's "reply" and "take" buttons act as a CRM user: crm loads that user and
runs the very service functions the API runs, so a manager can do from Telegram exactly
what they could in the CRM and nothing more. A refusal (not your deal, window closed,
deactivated user...) is final: it is published as ``crm.cmd.rejected`` with the sentence
the API would have answered, and the command is acknowledged, never retried. Every
command is answered: an assignment that changes nothing is answered with a rejection
too (its sender is waiting for one).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmSettings
from crm.deals import service as deals
from crm.deals.access import is_admin
from crm.deals.schemas import DealPatch
from crm.models import User
from crm.web.errors import CrmError, Forbidden
from jggl_common.contracts import (
    ALREADY_ASSIGNED_TO_YOU,
    AssignDealCommand,
    CommandRejected,
    CommandRejectedData,
    Envelope,
    SendMessageCommand,
    stable_event_id,
)
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox, stage

from .events import PRODUCER
from .schemas import ReplyIn
from .service import submit_reply

__all__ = ["CommandOutcome", "Commands"]

log = get_logger(__name__)

CommandOutcome = Literal["applied", "rejected"]

UNCHANGED_ASSIGNEE = "The deal already has this assignee"
"""Why an assignment that changes nothing is answered with ``crm.cmd.rejected``."""


class Commands:
    """Applies ``crm.cmd.*`` commands; one per process."""

    def __init__(self, outbox: Outbox, settings: CrmSettings) -> None:
        self._outbox = outbox
        self._settings = settings

    async def send_message(self, command: SendMessageCommand) -> CommandOutcome:
        """Queue a reply as the acting user (the sender delivers it like any other)."""
        data = command.data
        try:
            reply = ReplyIn.model_validate(
                {
                    "text": data.text,
                    "attachments": [a.model_dump() for a in data.attachments],
                    "idempotency_key": data.idempotency_key,
                }
            )
        except ValidationError as exc:
            reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            return await self._reject(command, data.acting_user_id, data.deal_id, 422, reason)
        try:
            async with self._outbox.transaction() as session:
                actor = await self._actor(session, data.acting_user_id)
                await submit_reply(session, self._settings, actor, data.deal_id, reply)
        except CrmError as exc:
            return await self._reject(command, data.acting_user_id, data.deal_id, exc.status_code, exc.detail)
        return "applied"

    async def assign_deal(self, command: AssignDealCommand) -> CommandOutcome:
        """Assign, take or let go of a deal as the acting user.

        A command that changes nothing (the deal already has that assignee) publishes no
        ``crm.deal.updated``, so it is answered with ``crm.cmd.rejected`` (409): for the
        acting user's own deal with :data:`ALREADY_ASSIGNED_TO_YOU` (the bot tells them
        the deal is already theirs), else with the sentence :data:`UNCHANGED_ASSIGNEE`."""
        data = command.data
        try:
            async with self._outbox.transaction() as session:
                actor = await self._actor(session, data.acting_user_id)
                if not is_admin(actor) and data.assignee_id == actor.id:
                    # A manager assigning themselves takes the deal: the API's POST /take,
                    # which refuses (409) a deal someone else took first.
                    _, staged = await deals.take_deal(session, actor, data.deal_id)
                else:
                    patch = DealPatch.model_validate({"assignee_id": data.assignee_id})
                    _, staged = await deals.update_deal(session, actor, data.deal_id, patch)
        except CrmError as exc:
            return await self._reject(command, data.acting_user_id, data.deal_id, exc.status_code, exc.detail)
        if not staged:
            reason = ALREADY_ASSIGNED_TO_YOU if data.assignee_id == data.acting_user_id else UNCHANGED_ASSIGNEE
            return await self._reject(command, data.acting_user_id, data.deal_id, 409, reason)
        return "applied"

    async def _actor(self, session: AsyncSession, user_id: int) -> User:
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            raise Forbidden("The acting user does not exist or is deactivated")
        return user

    async def _reject(
        self, command: Envelope, user_id: int | None, deal_id: int | None, status: int, reason: str
    ) -> CommandOutcome:
        event = CommandRejected(
            id=stable_event_id(f"crm.cmd.rejected:{command.id}"),
            producer=PRODUCER,
            correlation_id=command.correlation_id,
            data=CommandRejectedData(
                command_id=command.id,
                command_type=command.type,
                acting_user_id=user_id,
                deal_id=deal_id,
                status=status,
                reason=reason,
            ),
        )
        async with self._outbox.transaction() as session:
            await stage(session, event)
        log.warning(
            "command rejected",
            command=command.type,
            command_id=command.id,
            user_id=user_id,
            status=status,
            reason=reason,
        )
        return "rejected"
