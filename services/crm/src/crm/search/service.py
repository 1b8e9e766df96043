"""Deal search with PostgreSQL full text.

The ``search_vector`` column is kept by triggers (contact name and username weigh A, AI
summary and intent B, comment and last message C, status D; the 'simple' configuration,
so any language matches without stemming). Every word the user types becomes a prefix
term, all of them required: "ив петр" finds "Иван Петров".

User text never reaches ``to_tsquery`` as syntax: only runs of letters and digits are
kept, each quoted by construction, so no input can break or widen the query. The
expensive highlighting runs only over the page of hits, in an outer query.

How a search is answered depends on how many deals it matches, estimated from the
column statistics (:mod:`crm.search.statistics`):

- A narrow search (up to a few thousand matches) goes through the GIN index and ranks
  every match. When one word is rare (an order number, an unusual surname) only the rare
  words go to the index and the others are checked on the few rows it returns, because
  expanding a common prefix in the index ("иван:*" is in a fifth of all deals) costs
  more than the whole rest of the search. A manager's search also takes this path when
  the index part is small (``MANAGER_INDEX_ENTRIES``), since only the matches they may
  see are then read from the table.
- A broad search ranks a bounded set of candidates: the newest matching deals the user
  may see (at least two and a half times the page). They are found by walking the deals
  newest first and testing each one, which stops as soon as enough have matched, and
  gives up after twice the deals expected to hold them (never more than
  ``RECENT_WINDOW``); ranking a fifth of a million deals to show twenty cannot be done
  in interactive time. So for very broad words the best-ranked of the newest matches
  come first: a name match still outranks a message match among them, but an old deal
  can lose its place to a newer, equally relevant one. If the walk finds fewer
  candidates than it needs (the estimate was wrong), the narrow path answers instead,
  exactly.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from crm.deals.access import visible_deal_scopes, visible_deals
from crm.deals.repository import DealRow
from crm.models import Contact, Deal, Stage, User

from .statistics import lexeme_statistics

MAX_WORDS = 8
MAX_WORD_LENGTH = 64

RECENT_WINDOW = 25_000
"""A broad search looks at most at this many of the newest deals (of each visibility kind)."""
WINDOW_MARGIN = 2.0
"""A broad search looks at this many times the newest deals expected to hold its candidates."""
CANDIDATES_PER_HIT = 2.5
MIN_CANDIDATES = 50
MAX_CANDIDATES = 125
SELECTIVE_SHARE = 0.01
"""Words in at most this share of deals are selective enough to drive the index alone."""
MANAGER_INDEX_ENTRIES = 20_000
"""Up to this many GIN entries to read, a manager's search goes through the index even when broad."""

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

Hit = tuple[DealRow, str, float]
"""A matching deal, its highlighted snippet and its rank."""


def prefix_words(text: str) -> list[str]:
    """The words of ``text`` as search terms: lower-cased runs of letters and digits, bounded."""
    return [word.lower()[:MAX_WORD_LENGTH] for word in _WORD.findall(text)][:MAX_WORDS]


def _expression(words: Sequence[str]) -> str:
    return " & ".join(f"{word}:*" for word in words)


def prefix_query(text: str) -> str | None:
    """A ``to_tsquery`` expression requiring a prefix of every word in ``text``; None if no words."""
    words = prefix_words(text)
    return _expression(words) if words else None


def render_snippet(raw: str | None) -> str:
    """The highlighted text as safe HTML with ``<mark>`` around matches."""
    return html.escape(raw or "").replace(_START, "<mark>").replace(_STOP, "</mark>")


def candidate_count(limit: int) -> int:
    """How many of the newest matches a broad search ranks for a page of ``limit``."""
    return max(MIN_CANDIDATES, min(MAX_CANDIDATES, round(limit * CANDIDATES_PER_HIT)), limit)


def recent_window(share: float, candidates: int) -> int | None:
    """How many of the newest deals to look through for ``candidates`` matches of a search
    in ``share`` of all deals; None when that is more than ``RECENT_WINDOW`` (a narrow search).

    Sized to the estimate rather than always the largest, so that a search broad overall
    but rare among the deals a manager sees gives up after a short walk.
    """
    if share <= 0:
        return None
    needed = math.ceil(WINDOW_MARGIN * candidates / share)
    return needed if needed <= RECENT_WINDOW else None


def _tsquery(words: Sequence[str]) -> ColumnElement[Any]:
    return sa.func.to_tsquery(_SIMPLE, sa.literal(_expression(words)))


async def search_deals(session: AsyncSession, user: User, text: str, *, limit: int) -> list[Hit]:
    """The best ``limit`` deals ``user`` may see that match ``text``, with snippet and rank."""
    words = prefix_words(text)
    if not words:
        return []
    statistics = await lexeme_statistics(session)
    if statistics is None:
        return await _search_indexed(session, user, words, words, limit=limit)
    selective = [word for word in words if statistics.word_share(word) <= SELECTIVE_SHARE]
    index_words = selective or words
    candidates = candidate_count(limit)
    window = recent_window(statistics.query_share(words), candidates)
    # A manager reads only the matches they may see from the index, usually a small part
    # of them: when the index part is small too, that beats walking deals that may hold
    # none of theirs (another team's customers).
    manager_index_is_cheap = (
        visible_deal_scopes(user) is not None and statistics.index_entries(index_words) <= MANAGER_INDEX_ENTRIES
    )
    if window is not None and not manager_index_is_cheap:
        hits = await _search_recent(session, user, words, limit=limit, candidates=candidates, window=window)
        if hits is not None:
            return hits
    return await _search_indexed(session, user, words, index_words, limit=limit)


def _recent_visible(user: User, window: int) -> sa.Subquery:
    """The newest ``window`` deals ``user`` may see (of each visibility scope), as index walks that stop early."""
    columns = (col(Deal.id), col(Deal.search_vector), col(Deal.created_at))
    newest = (col(Deal.created_at).desc(), col(Deal.id).desc())
    scopes = visible_deal_scopes(user)
    if scopes is None:
        return select(*columns).order_by(*newest).limit(window).subquery("recent")
    # A manager's own and the unassigned deals as ordered index walks merged, rather than
    # one walk over every deal that skips the ones of other managers.
    walks = (select(*columns).where(scope).order_by(*newest).limit(window) for scope in scopes)
    return sa.union_all(*walks).subquery("recent")


async def _search_recent(
    session: AsyncSession, user: User, words: Sequence[str], *, limit: int, candidates: int, window: int
) -> list[Hit] | None:
    """The best ``limit`` of the newest ``candidates`` matches among the newest ``window`` visible deals
    (of each kind: a manager's own and the unassigned ones); None when fewer match there."""
    # Computed once for the whole walk. The match test is the function behind ``@@``:
    # it cannot use the GIN index, so the walk stays a walk.
    tsquery = select(_tsquery(words)).scalar_subquery()
    recent = _recent_visible(user, window)
    matches = (
        select(recent.c.id, recent.c.search_vector)
        .where(sa.func.ts_match_vq(recent.c.search_vector, tsquery))
        .order_by(recent.c.created_at.desc(), recent.c.id.desc())
        .limit(candidates)
        .subquery("matches")
    )
    rank = sa.func.ts_rank_cd(_WEIGHTS, matches.c.search_vector, tsquery)
    top = (
        select(matches.c.id.label("deal_id"), rank.label("rank"), sa.func.count().over().label("found"))
        .order_by(rank.desc(), matches.c.id.desc())
        .limit(limit)
        .subquery("top")
    )
    rows = (await session.execute(_hits(top, tsquery, top.c.found))).all()
    if not rows or rows[0][-1] < candidates:
        return None
    return [_hit(row[:-1]) for row in rows]


async def _search_indexed(
    session: AsyncSession, user: User, words: Sequence[str], index_words: Sequence[str], *, limit: int
) -> list[Hit]:
    """The best ``limit`` of every visible match, found through the GIN index on ``index_words``."""
    tsquery = _tsquery(words)
    match: ColumnElement[bool]
    if len(index_words) == len(words):
        match = col(Deal.search_vector).op("@@")(tsquery)
    else:
        # The index narrows by the rare words; the rows it returns are checked against all of them.
        match = sa.and_(
            col(Deal.search_vector).op("@@")(_tsquery(index_words)),
            sa.func.ts_match_vq(col(Deal.search_vector), tsquery),
        )
    rank = sa.func.ts_rank_cd(_WEIGHTS, col(Deal.search_vector), tsquery)
    top = (
        select(col(Deal.id).label("deal_id"), rank.label("rank"))
        .where(match, visible_deals(user))
        .order_by(rank.desc(), col(Deal.id).desc())
        .limit(limit)
        .subquery("top")
    )
    return [_hit(row) for row in (await session.execute(_hits(top, tsquery))).all()]


def _hits(top: sa.Subquery, tsquery: ColumnElement[Any], *extra: ColumnElement[Any]) -> Select[Any]:
    """The deals of ``top`` (``deal_id``, ``rank``) with contact, stage, assignee and snippet, best first."""
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
    return (
        select(Deal, Contact, Stage, col(User.name), headline, top.c.rank, *extra)
        .select_from(top)
        .join(Deal, col(Deal.id) == top.c.deal_id)
        .join(Contact, col(Contact.id) == col(Deal.contact_id))
        .join(Stage, col(Stage.id) == col(Deal.stage_id))
        .outerjoin(User, col(User.id) == col(Deal.assignee_id))
        .order_by(top.c.rank.desc(), col(Deal.id).desc())
    )


def _hit(row: Sequence[Any]) -> Hit:
    deal, contact, stage, assignee_name, snippet, score = row
    return (deal, contact, stage, assignee_name), render_snippet(snippet), float(score)
