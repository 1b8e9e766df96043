"""What the pipeline and stages API reads and answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crm.web.types import CleanStr


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


StageName = Annotated[CleanStr, Field(min_length=1, max_length=100), AfterValidator(_not_blank)]
Position = Annotated[int, Field(ge=0, le=1_000_000)]


class StageRead(BaseModel):
    """A pipeline stage."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str = Field(description="stable identifier used by the API and events")
    name: str
    position: int
    is_active: bool


class StageList(BaseModel):
    """Every stage in pipeline order."""

    items: list[StageRead]


class StageCreate(BaseModel):
    """A new stage."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,49}$", description="lower-case letters, digits, _")]
    name: StageName
    position: Position | None = Field(default=None, description="defaults to after the last stage")
    is_active: bool = True


class StageUpdate(BaseModel):
    """Changes to a stage; absent fields stay as they are. The key never changes."""

    model_config = ConfigDict(extra="forbid")

    name: StageName | None = None
    position: Position | None = None
    is_active: bool | None = None


class Totals(BaseModel):
    """How many deals and their summed amount."""

    count: int
    amount: Decimal = Field(description="sum of the amounts that are set")


class PipelineStage(StageRead, Totals):
    """A stage with its open deals' totals."""


class Pipeline(BaseModel):
    """The board: open deals per stage, plus won and lost totals, over the deals you may see."""

    stages: list[PipelineStage]
    open: Totals
    won: Totals
    lost: Totals
