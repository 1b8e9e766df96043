"""``GET /api/events``: the live event stream (Server-Sent Events); ``HEAD`` says whether one would open."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import select
from sqlmodel import col

from crm.auth.dependencies import Caller, CurrentCaller
from crm.deals.access import is_admin
from crm.limits.openapi import RETRY_AFTER
from crm.limits.streams import RETRY_AFTER_SECONDS, TOO_MANY_STREAMS, LiveStreamSlots
from crm.models import User
from crm.web.errors import ErrorMessage, ServiceUnavailable, TooManyRequests, error_responses
from crm.web.state import CrmState, Session, State

from .streams import LiveStream, SessionCheck
from .visibility import LIVE_EVENTS

router = APIRouter(tags=["live"])

_EVENT_TYPES = ", ".join(f"`{name}`" for name in LIVE_EVENTS)
_DESCRIPTION = f"""crm's events as they happen, for the web app to update its pages in place.

`text/event-stream`. The first event is `ready` (its `id` is the position the stream
resumes after, its data `{{"last_event_id": n}}`); then each event as `id: <stream
sequence>`, `event: <type>`, `data: <the event's JSON envelope: id, type, version,
occurred_at, producer, correlation_id, data>`. Types: {_EVENT_TYPES} (the last for admins
only). A manager receives the events of their own and unassigned deals, and the
`crm.deal.updated` that takes a deal away from them. A comment line (`: heartbeat`) comes
after every 15 seconds of silence.

Reconnecting with `Last-Event-ID` (browsers do it on their own) or `?last_event_id=`
resumes right after that event; without it the stream starts with new events. The stream
ends when the session expires or is revoked (sign-out, deactivation, a role or password
change: within one heartbeat interval; reconnecting then answers 401) and when crm shuts
down; reconnect with the last id to go on. Events are read from JetStream as the client takes
them, so a slow client or a long backlog costs crm no memory and loses nothing.

A user may have `LIVE_MAX_STREAMS_PER_USER` streams open at once (10 by default; every
crm replica counts together); one more is refused with 429, `Retry-After` and the sentence
"{TOO_MANY_STREAMS}". A stream that ends frees its place at once.
`HEAD /api/events` answers what this would (200, 401, 429 or 503) without opening a
stream, for a client whose EventSource was refused and that cannot see why.
"""

_TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorMessage,
        "description": "Too many open live connections for this user (LIVE_MAX_STREAMS_PER_USER); "
        "close one, or wait Retry-After seconds",
        "headers": {"Retry-After": RETRY_AFTER},
    }
}


def too_many_streams() -> TooManyRequests:
    """The refusal of a stream beyond the user's cap."""
    return TooManyRequests(TOO_MANY_STREAMS, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def session_check(caller: Caller, state: CrmState) -> SessionCheck:
    """Reads the caller's user again (one primary-key read, its own short-lived connection):
    the session is valid while the user is active, has the same role and password, and has
    not revoked the tokens issued before."""
    user_id, role, claims = caller.user.id, caller.user.role, caller.claims
    columns = select(col(User.is_active), col(User.role), col(User.password_hash), col(User.tokens_valid_after)).where(
        col(User.id) == user_id
    )

    async def valid() -> bool:
        async with state.sessions() as session:
            row = (await session.execute(columns)).one_or_none()
        if row is None:
            return False
        is_active, now_role, password_hash, tokens_valid_after = row
        return bool(
            is_active
            and now_role == role
            and not claims.revoked_by(tokens_valid_after)
            and state.tokens.password_matches(claims, password_hash)
        )

    return valid


async def open_stream(
    caller: CurrentCaller,
    session: Session,
    state: State,
    slots: LiveStreamSlots,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, description="the id of the last event received (browsers send it)"),
    ] = None,
    resume_after: Annotated[
        int | None,
        Query(
            alias="last_event_id",
            ge=0,
            description="the same as the Last-Event-ID header, for clients that cannot set it",
        ),
    ] = None,
) -> AsyncIterator[LiveStream]:
    """The caller's stream, open before the answer starts (so a broker failure is a 503, not a broken 200)."""
    check = session_check(caller, state)
    # The stream may stay open for hours: it must not hold a database connection meanwhile.
    await session.close()
    if state.live is None:
        raise ServiceUnavailable("Live events are not available in this process")
    assert caller.user.id is not None
    slot = await slots.take(caller.user.id)
    if slot is None:
        raise too_many_streams()
    try:
        try:
            stream = await state.live.open(
                user_id=caller.user.id,
                admin=is_admin(caller.user),
                after=last_event_id if last_event_id is not None else resume_after,
                expires_at=caller.claims.expires_at,
                session_valid=check,
            )
        except ConnectionError:
            raise ServiceUnavailable("Live events are unavailable right now; try again shortly") from None
        try:
            yield stream
        finally:
            await stream.aclose()
    finally:
        await slots.release(slot)


@router.get(
    "/api/events",
    summary="Live events",
    description=_DESCRIPTION,
    response_class=EventSourceResponse,
    responses={**error_responses(401, 503), **_TOO_MANY},
)
async def live_events(stream: Annotated[LiveStream, Depends(open_stream)]) -> AsyncIterable[ServerSentEvent]:
    """crm's events as they happen (see the description above)."""
    async for event in stream.events():
        yield event


@router.head(
    "/api/events",
    summary="Whether a live event stream would open",
    description="The answer `GET /api/events` would give now (200, 401, 429 with `Retry-After`, 503), "
    "without a body and without opening a stream.",
    response_class=Response,
    responses={200: {"description": "A stream would open"}, **error_responses(401, 503), **_TOO_MANY},
)
async def live_events_room(caller: CurrentCaller, session: Session, state: State, slots: LiveStreamSlots) -> Response:
    """Whether the caller may open a live event stream now."""
    await session.close()
    if state.live is None:
        raise ServiceUnavailable("Live events are not available in this process")
    assert caller.user.id is not None
    if not await slots.has_room(caller.user.id):
        raise too_many_streams()
    return Response(media_type="text/event-stream")
