"""Versioned contracts of the events and commands that cross services.

Pure pydantic: nothing here imports an ORM or a broker. A change that breaks a published
version is a new class with a new ``version``, never an edit; the snapshot tests in
``tests/contracts`` enforce that.
"""

from .admin import (
    ChannelNeedsReauth,
    ChannelNeedsReauthData,
    TelegramLinkRequested,
    TelegramLinkRequestedData,
    link_code_hash,
)
from .base import EVENT_ID_NAMESPACE, Envelope, stable_event_id, utcnow
from .crm import (
    ContactRef,
    DealCreated,
    DealSnapshot,
    DealUpdated,
    DealUpdatedData,
    MessageReceived,
    MessageReceivedData,
)
from .dlq import DeadLetter, DeadLetterData
from .ingest import (
    META_KINDS,
    MetaItemData,
    MetaItemReceived,
    MetaKind,
    MetaObject,
    TelegramUpdateData,
    TelegramUpdateReceived,
    meta_subject,
)
from .outbound import (
    AssignDealCommand,
    AssignDealCommandData,
    CommandRejected,
    CommandRejectedData,
    MessageFailed,
    MessageFailedData,
    MessageSent,
    MessageSentData,
    OutgoingAttachment,
    SendMessageCommand,
    SendMessageCommandData,
    SendRequested,
    SendRequestedData,
)

CONTRACTS: tuple[type[Envelope], ...] = (
    MetaItemReceived,
    TelegramUpdateReceived,
    DeadLetter,
    DealCreated,
    DealUpdated,
    MessageReceived,
    TelegramLinkRequested,
    ChannelNeedsReauth,
    SendRequested,
    MessageSent,
    MessageFailed,
    SendMessageCommand,
    AssignDealCommand,
    CommandRejected,
)
"""Every published contract; the snapshot test covers each of them."""

__all__ = [
    "CONTRACTS",
    "EVENT_ID_NAMESPACE",
    "META_KINDS",
    "AssignDealCommand",
    "AssignDealCommandData",
    "ChannelNeedsReauth",
    "ChannelNeedsReauthData",
    "CommandRejected",
    "CommandRejectedData",
    "ContactRef",
    "DeadLetter",
    "DeadLetterData",
    "DealCreated",
    "DealSnapshot",
    "DealUpdated",
    "DealUpdatedData",
    "Envelope",
    "MessageFailed",
    "MessageFailedData",
    "MessageReceived",
    "MessageReceivedData",
    "MessageSent",
    "MessageSentData",
    "MetaItemData",
    "MetaItemReceived",
    "MetaKind",
    "MetaObject",
    "OutgoingAttachment",
    "SendMessageCommand",
    "SendMessageCommandData",
    "SendRequested",
    "SendRequestedData",
    "TelegramLinkRequested",
    "TelegramLinkRequestedData",
    "TelegramUpdateData",
    "TelegramUpdateReceived",
    "link_code_hash",
    "meta_subject",
    "stable_event_id",
    "utcnow",
]
