"""``POST /api/deals/{id}/messages``: a manager's reply to the deal's customer."""

from __future__ import annotations

from fastapi import APIRouter, Response

from crm.auth.dependencies import CurrentUser
from crm.web.errors import error_responses
from crm.web.state import Session, State
from crm.web.types import DealId

from .schemas import OutgoingMessage, ReplyIn
from .service import submit_reply

router = APIRouter(prefix="/api/deals", tags=["messages"], responses=error_responses(401))


@router.post(
    "/{deal_id}/messages",
    summary="Reply to the customer",
    status_code=202,
    responses={
        200: {"model": OutgoingMessage, "description": "A repeat of an accepted reply (same idempotency_key)"},
        **error_responses(404, 409),
    },
)
async def send_reply(
    user: CurrentUser, session: Session, state: State, deal_id: DealId, reply: ReplyIn, response: Response
) -> OutgoingMessage:
    """Queue a reply for delivery through Meta; it goes out within moments.

    Answers 202 with the reply in status ``queued``; follow it in the deal's messages
    (``sent`` with Meta's ``mid``, or ``failed`` with Meta's error). Meta's window rules
    apply: within 24 hours of the customer's last message the reply is a ``RESPONSE``;
    from 24 hours to 7 days it needs the human agent tag (setting ``meta.human_agent``),
    otherwise, and after 7 days, the answer is 409 and nothing is queued.

    ``idempotency_key`` is yours to choose per reply: sending the same key again (a
    double click, a retry after a timeout) answers 200 with the reply already accepted
    and never sends twice.
    """
    submitted = await submit_reply(session, state.settings, user, deal_id, reply)
    await session.commit()
    await state.announce(session)
    if not submitted.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return OutgoingMessage.of(submitted.message)
