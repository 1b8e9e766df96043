"""The durable JetStream consumers of replies: the sender and the commands.

Payloads are validated here rather than by FastStream, so a malformed one fails inside
the bus's retry/DLQ policy (at once, as a :class:`PermanentFailure`) instead of being
dropped by the framework. Acknowledgement is the bus's job, after the handler returns.
"""

from __future__ import annotations

from typing import Any, TypeVar

from faststream.exceptions import NackMessage
from pydantic import ValidationError

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import AssignDealCommand, SendMessageCommand, SendRequested
from jggl_common.streams import CRM

from .commands import Commands
from .sender import RetryLater, Sender

__all__ = [
    "ASSIGN_DEAL_DURABLE",
    "SENDER_DURABLE",
    "SEND_MESSAGE_DURABLE",
    "register_commands",
    "register_sender",
]

SENDER_DURABLE = "crm-outbound-sender"
SEND_MESSAGE_DURABLE = "crm-cmd-send-message"
ASSIGN_DEAL_DURABLE = "crm-cmd-assign-deal"


def register_sender(
    bus: ServiceBus,
    sender: Sender,
    *,
    durable: str = SENDER_DURABLE,
    policy: RetryPolicy,
    max_workers: int = 4,
) -> None:
    """Register the sender on ``crm.outbound.send_requested`` as the durable consumer ``durable``.

    Throttling and outages are retried by delayed redelivery (:class:`RetryLater`), counted
    in the database against ``SEND_MAX_ATTEMPTS``; ``policy`` must allow more deliveries
    than that so JetStream's own cap never cuts a retry short.
    """

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable,
        stream=CRM,
        subject=SendRequested.subject,
        policy=policy,
        max_workers=max_workers,
        # A delivery may wait for the conversation's turn and then for Meta (10 s).
        ack_wait=60.0,
    )
    async def on_send_requested(body: dict[str, Any]) -> None:
        event = _parse(SendRequested, body)
        try:
            await sender.handle(event)
        except RetryLater as later:
            raise NackMessage(delay=later.delay) from None


def register_commands(
    bus: ServiceBus,
    commands: Commands,
    *,
    send_message_durable: str = SEND_MESSAGE_DURABLE,
    assign_deal_durable: str = ASSIGN_DEAL_DURABLE,
    policy: RetryPolicy | None = None,
    max_workers: int = 4,
) -> None:
    """Register the consumers of ``crm.cmd.send_message`` and ``crm.cmd.assign_deal``."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=send_message_durable,
        stream=CRM,
        subject=SendMessageCommand.subject,
        policy=policy,
        max_workers=max_workers,
    )
    async def on_send_message(body: dict[str, Any]) -> None:
        await commands.send_message(_parse(SendMessageCommand, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=assign_deal_durable,
        stream=CRM,
        subject=AssignDealCommand.subject,
        policy=policy,
        max_workers=max_workers,
    )
    async def on_assign_deal(body: dict[str, Any]) -> None:
        await commands.assign_deal(_parse(AssignDealCommand, body))


_Contract = TypeVar("_Contract", SendRequested, SendMessageCommand, AssignDealCommand)


def _parse(contract: type[_Contract], body: Any) -> _Contract:
    try:
        return contract.model_validate(body)
    except ValidationError as exc:
        raise PermanentFailure(f"malformed {contract.subject}: {exc}") from exc
