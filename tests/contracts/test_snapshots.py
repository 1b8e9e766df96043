"""A published contract version never changes.

Each contract's JSON schema is compared with the snapshot committed beside this test. A
breaking change must be a new class with a new ``version`` (and a new snapshot), never an
edit. New contracts get their snapshot with ``UPDATE_SNAPSHOTS=1 make test``; an existing
snapshot is never overwritten.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jggl_common.contracts import CONTRACTS, Envelope

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _schema(contract: type[Envelope]) -> dict[str, object]:
    return contract.model_json_schema(mode="serialization")


def _name(contract: type[Envelope]) -> str:
    fields = contract.model_fields
    return f"{fields['type'].default}.v{fields['version'].default}"


@pytest.mark.parametrize("contract", CONTRACTS, ids=_name)
def test_published_contract_schema_is_unchanged(contract: type[Envelope]) -> None:
    path = SNAPSHOTS / f"{_name(contract)}.json"
    current = json.dumps(_schema(contract), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if not path.exists():
        if os.environ.get("UPDATE_SNAPSHOTS") == "1":
            path.write_text(current, encoding="utf-8")
            return
        pytest.fail(f"{path.name} has no snapshot: run UPDATE_SNAPSHOTS=1 to record a new contract")
    assert path.read_text(encoding="utf-8") == current, (
        f"{_name(contract)} changed. A published version is frozen: add a new version instead."
    )


def test_every_contract_fixes_its_type_and_version() -> None:
    names = [_name(contract) for contract in CONTRACTS]
    assert len(names) == len(set(names))
    for contract in CONTRACTS:
        assert contract.model_fields["type"].default, contract
        assert isinstance(contract.model_fields["version"].default, int), contract


def test_an_envelope_round_trips_through_json() -> None:
    from jggl_common.contracts import MetaItemData, MetaItemReceived, stable_event_id

    data = MetaItemData(
        object="page", kind="message", entry_id="1", dedupe_key="page:message:m1", item={"message": {"mid": "m1"}}
    )
    event = MetaItemReceived(id=stable_event_id("page:message:m1"), producer="ingest", data=data)
    again = MetaItemReceived.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.id == stable_event_id("page:message:m1")
    with pytest.raises(ValueError, match="kind"):
        MetaItemData(object="page", kind="nonsense", entry_id="1", dedupe_key="k", item={})


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_stable_event_ids_are_uuid5_of_the_key(key: str) -> None:
    """Ids published by earlier versions must stay equal, or JetStream would store repeats."""
    from jggl_common.contracts import stable_event_id
    from jggl_common.contracts.base import EVENT_ID_NAMESPACE

    assert stable_event_id(key) == str(uuid.uuid5(EVENT_ID_NAMESPACE, key))
