"""What the search API answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from crm.deals.schemas import DealItem


class SearchHit(DealItem):
    """A matching deal with the matched words highlighted."""

    snippet: str = Field(description="HTML-escaped text with matches wrapped in <mark>…</mark>")
    rank: float = Field(description="higher is better; name matches weigh most")


class SearchResults(BaseModel):
    """Best matches first."""

    items: list[SearchHit]
