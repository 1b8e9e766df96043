"""Which of two analyses of a conversation a deal keeps: the rule, and the same rule in SQL.

Analyses arrive late, twice, and in any order, so a deal keeps the *newest* one whatever
happened: the one that read more of the transcript (higher ``version``); at the same
version Gemini's rather than the heuristic's (the heuristic only stands in while Gemini
is out); and between two analyses otherwise equal, the one the AI service made last
(higher ``analysis_id``), so even that tie ends the same in every order. An analysis is
applied only if it comes after the one the deal holds, so a repeat changes nothing.

:data:`SUPERSEDES_SQL` is :func:`supersedes` as the condition of the UPDATE that applies
an analysis; a test runs both over the same cases.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROVIDER_RANK", "SUPERSEDES_SQL", "AnalysisKey", "supersedes"]

PROVIDER_RANK: dict[str, int] = {"heuristic": 0, "gemini": 1}
"""How much a provider's analysis is worth at the same version; unknown providers rank 0."""


@dataclass(frozen=True, slots=True)
class AnalysisKey:
    """What identifies an analysis for ordering: its version, provider and id."""

    version: int
    provider: str
    analysis_id: int

    def rank(self) -> tuple[int, int, int]:
        """The analysis's position in the order; a greater rank is newer."""
        return (self.version, PROVIDER_RANK.get(self.provider, 0), self.analysis_id)


def supersedes(new: AnalysisKey, held: AnalysisKey | None) -> bool:
    """Whether a deal holding ``held`` (None: no analysis yet) takes ``new`` instead."""
    return held is None or new.rank() > held.rank()


def _rank_sql(provider: str) -> str:
    cases = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in PROVIDER_RANK.items())
    return f"CASE {provider} {cases} ELSE 0 END"


SUPERSEDES_SQL = (
    "(ai_version IS NULL OR ai_analysis_id IS NULL"
    " OR (CAST(:version AS integer), " + _rank_sql("CAST(:provider AS text)") + ", CAST(:analysis_id AS bigint))"
    " > (ai_version, " + _rank_sql("ai_source") + ", ai_analysis_id))"
)
""":func:`supersedes` over the ``deals`` row being updated, with the new analysis bound
as ``:version``, ``:provider`` and ``:analysis_id`` (a deal without a version or an
analysis id holds no analysis of this kind and takes any)."""
