"""Meta backfill: messages whose webhooks never arrived, recovered from the Conversations API.

Webhooks can be lost: an outage longer than Meta's retries, a subscription Meta dropped.
Meta still has the conversations, so for each active channel this reads the conversations
updated since the channel's last sync (newest first, page after page, stopping at the
first older one), then each one's messages in the same window, and feeds every message
through the same path as a webhook: an ``ingest.meta.<object>.message`` (or ``.echo`` for
what the page sent) event on the ``INGEST`` stream, with the same dedupe key and event id
ingest gives that message. JetStream's duplicate window and crm's unique ``mid`` index
then make a message that did arrive by webhook, or is backfilled twice, a no-op: each
missing message is stored exactly once and nothing is doubled.

A channel's cursor (``synced_until``) moves to the start of a sync that went through, so
what arrives during a sync is looked at again next time; a sync for an admin's time range
leaves it alone. Meta allows the Conversations API about 2 calls/s, so calls are paced,
and throttling or an unreachable Graph API stops that channel's sync until the next tick.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from crm.channels.tokens import PageTokens
from crm.config import CrmSettings
from crm.graph import GraphClient, GraphError
from crm.models import Channel
from jggl_common.bus import EventPublisher
from jggl_common.contracts import (
    MetaItemData,
    MetaItemReceived,
    message_dedupe_key,
    meta_subject,
    stable_event_id,
    utcnow,
)
from jggl_common.logs import get_logger

__all__ = ["MAX_RANGE", "BackfillCounts", "BackfillRange", "MetaBackfill", "graph_time", "message_item"]

log = get_logger(__name__)

PRODUCER = "crm"
MAX_RANGE = timedelta(days=30)
"""The longest time range an admin's backfill covers (Meta keeps only a conversation's last 20 messages)."""
CONVERSATION_FIELDS = "id,updated_time"
MESSAGE_FIELDS = "id,created_time,from,to,message,attachments"
_OBJECTS = {"messenger": "page", "instagram": "instagram"}


def graph_time(value: Any) -> datetime | None:
    """Graph's ``2026-12-06T10:00:00+0000`` as an aware datetime; None when unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    except ValueError:
        return None


def _attachment(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A Conversations API attachment in the webhook's ``{"type", "payload": {"url"}}`` shape."""
    for key, kind in (("image_data", "image"), ("video_data", "video")):
        data = raw.get(key)
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            return {"type": kind, "payload": {"url": data["url"]}}
    url = raw.get("file_url")
    if isinstance(url, str):
        mime = raw.get("mime_type")
        kind = "audio" if isinstance(mime, str) and mime.startswith("audio/") else "file"
        return {"type": kind, "payload": {"url": url}}
    return None


def message_item(channel_id: str, message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(kind, messaging item)`` for a Conversations API message, as the webhook would
    carry it (``echo`` when the page sent it); None when it lacks an id, a time or parties."""
    mid = message.get("id")
    sent = graph_time(message.get("created_time"))
    sender = message.get("from")
    recipients = message.get("to")
    to_data = recipients.get("data") if isinstance(recipients, dict) else None
    recipient = to_data[0] if isinstance(to_data, list) and to_data and isinstance(to_data[0], dict) else None
    if not isinstance(mid, str) or sent is None or not isinstance(sender, dict) or recipient is None:
        return None
    sender_id, recipient_id = str(sender.get("id", "")), str(recipient.get("id", ""))
    if not sender_id or not recipient_id:
        return None
    body: dict[str, Any] = {"mid": mid}
    text = message.get("message")
    if isinstance(text, str) and text:
        body["text"] = text
    raw_attachments = message.get("attachments")
    listed = raw_attachments.get("data") if isinstance(raw_attachments, dict) else None
    attachments = [a for a in (_attachment(r) for r in listed or [] if isinstance(r, dict)) if a is not None]
    if attachments:
        body["attachments"] = attachments
    kind = "message"
    if sender_id == channel_id:
        kind = "echo"
        body["is_echo"] = True
    timestamp = int(sent.timestamp() * 1000)
    item = {"sender": {"id": sender_id}, "recipient": {"id": recipient_id}, "timestamp": timestamp, "message": body}
    return kind, item


class BackfillRange(BaseModel):
    """The time range of an admin's backfill run; without one a run starts at each channel's cursor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: AwareDatetime | None = Field(default=None, description="recover messages sent at or after")
    until: AwareDatetime | None = Field(default=None, description="and at or before (default: now)")

    @model_validator(mode="after")
    def _sensible(self) -> BackfillRange:
        if self.until is not None and self.since is None:
            raise ValueError("until needs since")
        if self.since is not None:
            end = self.until or utcnow()
            if end <= self.since:
                raise ValueError("since must be before until")
            if end - self.since > MAX_RANGE:
                raise ValueError(f"a backfill covers at most {MAX_RANGE.days} days")
            if self.since > utcnow():
                raise ValueError("since must not be in the future")
        return self


@dataclass
class BackfillCounts:
    """What a backfill did."""

    channels: int = 0
    conversations: int = 0
    messages: int = 0
    failed_channels: int = 0
    unfinished_channels: int = 0
    """Channels left for the next run: the time budget ran out first."""

    def as_dict(self) -> dict[str, int]:
        return {
            "channels": self.channels,
            "conversations": self.conversations,
            "messages": self.messages,
            "failed_channels": self.failed_channels,
            "unfinished_channels": self.unfinished_channels,
        }


class _OutOfTime(Exception):
    """The run's time budget is used up: the channel at hand is left for the next run."""


class MetaBackfill:
    """Recovers missed messages of every active channel; one per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        graph: GraphClient,
        publisher: EventPublisher,
        settings: CrmSettings,
    ) -> None:
        self._sessions = sessions
        self._graph = graph
        self._publisher = publisher
        self._settings = settings
        self._tokens = PageTokens(settings)
        self._interval = 1.0 / settings.meta_sync_calls_per_second
        self._next_call = 0.0
        self._deadline: float | None = None

    async def run(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        max_seconds: float | None = None,
        correlation_id: str | None = None,
    ) -> BackfillCounts:
        """Backfill every active channel: from its cursor (or ``since``), up to now (or
        ``until``); after ``max_seconds`` the channels not done are left, cursors unmoved,
        for the next run."""
        started = utcnow()
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + max_seconds if max_seconds is not None else None
        async with self._sessions() as session:
            channels = list(
                (
                    await session.execute(select(Channel).where(col(Channel.is_active)).order_by(col(Channel.id)))
                ).scalars()
            )
        counts = BackfillCounts()
        first_sync = timedelta(hours=self._settings.meta_sync_first_hours)
        overlap = timedelta(minutes=self._settings.meta_sync_overlap_minutes)
        for channel in channels:
            token = self._tokens.token_for(channel.access_token_sealed)
            if token is None:
                continue
            start = since or ((channel.synced_until - overlap) if channel.synced_until else started - first_sync)
            counts.channels += 1
            try:
                await self._channel(channel, token, start, until or started, counts, correlation_id)
            except _OutOfTime:
                counts.unfinished_channels = len(channels) - channels.index(channel)
                log.warning("backfill stopped at its time budget", unfinished_channels=counts.unfinished_channels)
                break
            except GraphError as exc:
                counts.failed_channels += 1
                log.warning("backfill of a channel stopped", channel_id=channel.id, error=str(exc))
                continue
            if since is None and until is None:
                async with self._sessions() as session, session.begin():
                    await session.execute(
                        update(Channel).where(col(Channel.id) == channel.id).values(synced_until=started)
                    )
        return counts

    async def _call(self, path: str, token: str, params: dict[str, str], after: str | None) -> Any:
        loop = asyncio.get_running_loop()
        if self._deadline is not None and loop.time() > self._deadline:
            raise _OutOfTime
        wait = self._next_call - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next_call = max(loop.time(), self._next_call) + self._interval
        return await self._graph.list_page(path, token=token, params=params, after=after)

    async def _channel(
        self,
        channel: Channel,
        token: str,
        start: datetime,
        end: datetime,
        counts: BackfillCounts,
        correlation_id: str | None,
    ) -> None:
        params = {"platform": channel.platform, "fields": CONVERSATION_FIELDS, "limit": "50"}
        after: str | None = None
        while True:
            page = await self._call(f"{channel.external_id}/conversations", token, params, after)
            for conversation in page.items:
                updated = graph_time(conversation.get("updated_time"))
                if updated is not None and updated < start:
                    return  # newest first: the rest were not updated in the window
                if isinstance(conversation.get("id"), str):
                    counts.conversations += 1
                    counts.messages += await self._conversation(
                        channel, token, conversation["id"], start, end, correlation_id
                    )
            if page.after is None:
                return
            after = page.after

    async def _conversation(
        self,
        channel: Channel,
        token: str,
        conversation_id: str,
        start: datetime,
        end: datetime,
        correlation_id: str | None,
    ) -> int:
        object_ = _OBJECTS[channel.platform]
        published = 0
        params = {"fields": MESSAGE_FIELDS, "limit": "20"}
        after: str | None = None
        while True:
            page = await self._call(f"{conversation_id}/messages", token, params, after)
            events = []
            older = False
            for message in page.items:
                found = message_item(channel.external_id, message)
                if found is None:
                    continue
                kind, item = found
                sent = datetime.fromtimestamp(item["timestamp"] / 1000, UTC)
                if sent < start:
                    older = True  # newest first: the rest are older still
                    break
                if sent > end:
                    continue
                events.append(self._event(channel, object_, kind, item, correlation_id))
            if events:
                await self._publisher.publish_many(events)
                published += len(events)
            if older or page.after is None:
                return published
            after = page.after

    def _event(
        self, channel: Channel, object_: str, kind: str, item: dict[str, Any], correlation_id: str | None
    ) -> tuple[str, MetaItemReceived]:
        """The event ingest would have published for this item (same subject, key and id)."""
        mid = item["message"]["mid"]
        key = message_dedupe_key(object_, kind, mid)
        data = MetaItemData(
            object=object_,
            kind=kind,
            entry_id=channel.external_id,
            entry_time=item["timestamp"],
            sender_id=item["sender"]["id"],
            recipient_id=item["recipient"]["id"],
            timestamp=item["timestamp"],
            mid=mid,
            dedupe_key=key,
            item=item,
        )
        envelope = MetaItemReceived(
            id=stable_event_id(key), producer=PRODUCER, correlation_id=correlation_id, data=data
        )
        return meta_subject(object_, kind), envelope
