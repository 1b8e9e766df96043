"""Deal search with PostgreSQL full text.

The ``search_vector`` column is kept by triggers (contact name and username weigh A, AI
summary and intent B, comment and last message C, status D; the 'simple' configuration,
so any language matches without stemming). Every word the user types becomes a prefix
term, all of them required: "ив петр" finds "Иван Петров".

User text never reaches ``to_tsquery`` as syntax: only runs of letters and digits are
kept, each quoted by construction, so no input can break or widen the query. The
expensive highlighting runs only over the page of hits, in an outer query.
"""

from __future__ import annotations

import html
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from crm.deals.access import visible_deals
from crm.deals.repository import DealRow
from crm.models import Contact, Deal, Stage, User

MAX_WORDS = 8
MAX_WORD_LENGTH = 64

_WORD = re.compile(r"\w+")
_SIMPLE: ColumnElement[Any] = sa.literal_column("'simple'::regconfig")
# Weights of D, C, B, A: a name match outranks anything said in the conversation.
_WEIGHTS: ColumnElement[Any] = sa.literal_column("'{0.05, 0.2, 0.4, 1.0}'::float4[]")
# Private-use characters mark matches inside PostgreSQL, so the text can be HTML-escaped
# afterwards without touching the highlighting; any such characters in the data are removed.
_START, _STOP = "\ue000", "\ue001"
_HEADLINE_OPTIONS = (
    f'StartSel={_START}, StopSel={_STOP}, MaxFragments=2, MinWords=4, MaxWords=16, FragmentDelimiter=" … "'
)


def prefix_query(text: str) -> str | None:
    """A ``to_tsquery`` expression requiring a prefix of every word in ``text``; None if no words."""
    words = [word.lower()[:MAX_WORD_LENGTH] for word in _WORD.findall(text)][:MAX_WORDS]
    if not words:
        return None
    return " & ".join(f"{word}:*" for word in words)


def render_snippet(raw: str | None) -> str:
    """The highlighted text as safe HTML with ``<mark>`` around matches."""
    return html.escape(raw or "").replace(_START, "<mark>").replace(_STOP, "</mark>")


async def search_deals(session: AsyncSession, user: User, text: str, *, limit: int) -> list[tuple[DealRow, str, float]]:
    """The best ``limit`` deals ``user`` may see that match ``text``, with snippet and rank."""
    expression = prefix_query(text)
    if expression is None:
        return []
    tsquery = sa.func.to_tsquery(_SIMPLE, sa.literal(expression))
    rank = sa.func.ts_rank_cd(_WEIGHTS, col(Deal.search_vector), tsquery)
    top = (
        select(col(Deal.id).label("deal_id"), rank.label("rank"))
        .where(col(Deal.search_vector).op("@@")(tsquery), visible_deals(user))
        .order_by(rank.desc(), col(Deal.id).desc())
        .limit(limit)
        .subquery("top")
    )
    document = sa.func.translate(
        sa.func.concat_ws(
            " · ",
            col(Contact.name),
            col(Contact.username),
            col(Deal.comment),
            col(Deal.last_message_text),
            col(Deal.ai_summary),
        ),
        _START + _STOP,
        "",
    )
    headline = sa.func.ts_headline(_SIMPLE, document, tsquery, _HEADLINE_OPTIONS)
    query = (
        select(Deal, Contact, Stage, col(User.name), headline, top.c.rank)
        .select_from(top)
        .join(Deal, col(Deal.id) == top.c.deal_id)
        .join(Contact, col(Contact.id) == col(Deal.contact_id))
        .join(Stage, col(Stage.id) == col(Deal.stage_id))
        .outerjoin(User, col(User.id) == col(Deal.assignee_id))
        .order_by(top.c.rank.desc(), col(Deal.id).desc())
    )
    hits = []
    for deal, contact, stage, assignee_name, snippet, score in (await session.execute(query)).all():
        hits.append(((deal, contact, stage, assignee_name), render_snippet(snippet), float(score)))
    return hits
