"""``/api/contacts``: the customers behind the deals."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from crm.auth.dependencies import CurrentUser
from crm.deals.schemas import Platform
from crm.web.errors import error_responses
from crm.web.state import Session, State
from crm.web.types import CleanStr, ContactId

from . import service
from .schemas import ContactDeal, ContactDetail, ContactItem, ContactPage

router = APIRouter(prefix="/api/contacts", tags=["contacts"], responses=error_responses(401))


@router.get("", summary="List contacts", responses=error_responses(400))
async def list_contacts(
    user: CurrentUser,
    session: Session,
    state: State,
    q: Annotated[CleanStr | None, Query(max_length=300, description="name prefix, any case")] = None,
    platform: Platform | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[CleanStr | None, Query(max_length=1000, description="next_cursor of the previous page")] = None,
) -> ContactPage:
    """Contacts you may see (managers: those with a deal of theirs or an unassigned one), newest first."""
    contacts, next_cursor = await service.list_contacts(
        session, user, state.cursors, q=q.strip() if q else None, platform=platform, limit=limit, cursor=cursor
    )
    return ContactPage(items=[ContactItem.of(contact) for contact in contacts], next_cursor=next_cursor)


@router.get("/{contact_id}", summary="Read a contact", responses=error_responses(404))
async def get_contact(user: CurrentUser, session: Session, contact_id: ContactId) -> ContactDetail:
    """A contact with the deals you may see."""
    contact, deals = await service.get_contact(session, user, contact_id)
    return ContactDetail(
        **ContactItem.of(contact).model_dump(), deals=[ContactDeal.of(deal, stage) for deal, stage in deals]
    )
