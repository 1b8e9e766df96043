"""Contracts published by ai: what it concluded about a conversation, or that it could not.

An analysis covers a conversation's transcript up to a *version* (the number of messages
the transcript held). crm keeps the newest one per deal: a higher version wins, and at the
same version a Gemini analysis replaces a heuristic one, never the other way round.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Envelope

__all__ = [
    "INTENTS",
    "TEMPERATURES",
    "AnalysisCompleted",
    "AnalysisCompletedData",
    "AnalysisFailed",
    "AnalysisFailedData",
    "AnalysisResult",
    "Intent",
    "ManagerNotes",
    "Provider",
    "Temperature",
]

Intent = Literal["purchase", "price", "availability", "delivery", "complaint", "support", "spam", "other"]
INTENTS: tuple[Intent, ...] = ("purchase", "price", "availability", "delivery", "complaint", "support", "spam", "other")
Temperature = Literal["hot", "warm", "cold"]
TEMPERATURES: tuple[Temperature, ...] = ("hot", "warm", "cold")
Provider = Literal["gemini", "heuristic"]


class ManagerNotes(BaseModel):
    """How the manager handled the conversation, one sentence per criterion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speed: str = Field(max_length=500)
    politeness: str = Field(max_length=500)
    needs_discovery: str = Field(max_length=500)
    next_step: str = Field(max_length=500, description="whether a next step was proposed")


class AnalysisResult(BaseModel):
    """What an analysis says about a conversation; every field is filled, or it is not a result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    summary: str = Field(min_length=1, max_length=2000, description="in the conversation's language")
    intent: Intent
    temperature: Temperature
    manager_score: int | None = Field(ge=0, le=10, description="0-10; null while no one has replied")
    manager_notes: ManagerNotes
    next_action: str = Field(min_length=1, max_length=500, description="what the manager should do next")
    language: str = Field(min_length=2, max_length=12, description="ISO 639-1 code of the conversation, e.g. 'ru'")


class AnalysisCompletedData(BaseModel):
    """An analysis of a conversation's transcript up to ``version``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    analysis_id: int
    conversation_id: int
    deal_id: int = Field(description="the deal the conversation's latest message belongs to")
    version: int = Field(ge=1, description="messages in the transcript when it was analysed")
    first_message_id: int | None = Field(default=None, description="first crm message id the analysis read in full")
    last_message_id: int | None = Field(default=None, description="last crm message id it covers")
    provider: Provider
    model: str | None = Field(default=None, description="the Gemini model; null for the heuristic")
    result: AnalysisResult
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    analyzed_at: datetime


class AnalysisCompleted(Envelope):
    """A conversation was analysed. Subject ``ai.analysis.completed``."""

    subject: ClassVar[str] = "ai.analysis.completed"

    type: Literal["ai.analysis.completed"] = "ai.analysis.completed"
    version: Literal[1] = 1
    data: AnalysisCompletedData


class AnalysisFailedData(BaseModel):
    """An analysis attempt that failed; ``will_retry`` says whether ai tries again by itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    analysis_id: int
    conversation_id: int
    deal_id: int
    version: int = Field(ge=1)
    provider: Provider
    model: str | None = None
    error: str = Field(max_length=2000)
    attempts: int = Field(ge=1)
    will_retry: bool
    failed_at: datetime


class AnalysisFailed(Envelope):
    """An analysis failed. Subject ``ai.analysis.failed``."""

    subject: ClassVar[str] = "ai.analysis.failed"

    type: Literal["ai.analysis.failed"] = "ai.analysis.failed"
    version: Literal[1] = 1
    data: AnalysisFailedData
