"""``/api/search``: find deals by name, conversation, comment or AI summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from crm.auth.dependencies import CurrentUser
from crm.deals.schemas import DealItem
from crm.web.errors import error_responses
from crm.web.state import Session
from crm.web.types import CleanStr

from . import service
from .schemas import SearchHit, SearchResults

router = APIRouter(tags=["search"], responses=error_responses(401))


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


@router.get("/api/search", summary="Search deals")
async def search(
    user: CurrentUser,
    session: Session,
    q: Annotated[
        CleanStr,
        Query(min_length=1, max_length=200, description="words or word beginnings"),
        AfterValidator(_not_blank),
    ],
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> SearchResults:
    """Deals you may see whose contact name, messages, comment or AI summary match every word of ``q``
    (as a prefix, any language), best first, with the matches highlighted in ``snippet``."""
    hits = await service.search_deals(session, user, q, limit=limit)
    return SearchResults(
        items=[SearchHit(**DealItem.fields_of(*row), snippet=snippet, rank=rank) for row, snippet, rank in hits]
    )
