"""How common search words are among deals, from PostgreSQL's column statistics.

``ANALYZE`` keeps, for the ``search_vector`` column, the most common lexemes and the
share of deals containing each (``pg_stats.most_common_elems``). That is enough to tell
a word found in a fifth of all deals from one found in a handful, which decides how a
search is answered (see :mod:`crm.search.service`). The figures are read once per
database and kept for a few minutes: they change only when the table is analysed again.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

REFRESH_SECONDS = 300.0

_STATISTICS = sa.text(
    """
    SELECT most_common_elems::text::text[] AS lexemes, most_common_elem_freqs AS shares,
           (SELECT reltuples FROM pg_class WHERE oid = to_regclass('deals')) AS deals
    FROM pg_stats
    WHERE schemaname = current_schema() AND tablename = 'deals' AND attname = 'search_vector'
    """
)


@dataclass(frozen=True)
class LexemeStatistics:
    """The most common lexemes of deals and the share of deals that contain each."""

    lexemes: tuple[str, ...]
    """Sorted by code point, so every lexeme with a given prefix is one contiguous run."""
    cumulative: tuple[float, ...]
    """``cumulative[i]`` is the summed share of ``lexemes[:i]``."""
    rare_share: float
    """An upper bound for the share of any lexeme not listed (the smallest listed share)."""
    deals: float
    """How many deals there are (as of the last ``ANALYZE``)."""

    @classmethod
    def of(cls, lexemes: Sequence[str], shares: Sequence[float], deals: float) -> LexemeStatistics | None:
        """From ``pg_stats``: the element shares are followed by their minimum and maximum."""
        if not lexemes or len(shares) < len(lexemes):
            return None
        pairs = sorted(zip(lexemes, shares[: len(lexemes)], strict=True))
        return cls(
            lexemes=tuple(lexeme for lexeme, _ in pairs),
            cumulative=(0.0, *itertools.accumulate(share for _, share in pairs)),
            rare_share=min(shares[: len(lexemes)]),
            deals=max(0.0, deals),
        )

    def word_share(self, word: str) -> float:
        """Estimated share of deals with a lexeme starting with ``word``."""
        start = bisect.bisect_left(self.lexemes, word)
        stop = bisect.bisect_left(self.lexemes, word + "\U0010ffff", lo=start)
        listed = self.cumulative[stop] - self.cumulative[start]
        # Unlisted lexemes with this prefix add something too, each below the smallest listed share.
        return min(1.0, listed + self.rare_share / 2)

    def query_share(self, words: Sequence[str]) -> float:
        """Estimated share of deals matching every word (taken as independent)."""
        return math.prod(self.word_share(word) for word in words)

    def index_entries(self, words: Sequence[str]) -> float:
        """Estimated GIN entries a search on ``words`` reads: every deal with a lexeme of each prefix."""
        return sum(self.word_share(word) for word in words) * self.deals


_cache: weakref.WeakKeyDictionary[Engine, tuple[float, LexemeStatistics | None]] = weakref.WeakKeyDictionary()


async def lexeme_statistics(session: AsyncSession) -> LexemeStatistics | None:
    """The statistics of the session's database (None before the first ``ANALYZE``)."""
    bind = session.bind
    engine = bind.sync_engine if bind is not None else None
    now = time.monotonic()
    if isinstance(engine, Engine) and (cached := _cache.get(engine)) is not None and cached[0] > now:
        return cached[1]
    row = (await session.execute(_STATISTICS)).first()
    statistics = (
        LexemeStatistics.of(row.lexemes, row.shares, float(row.deals or 0)) if row is not None and row.lexemes else None
    )
    if isinstance(engine, Engine):
        _cache[engine] = (now + REFRESH_SECONDS, statistics)
    return statistics
