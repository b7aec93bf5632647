"""The per-target state file: atomic replacement, strict parsing, cached reads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from instanceapi.check.store.state import (
    StateUnreadable,
    StateView,
    TargetState,
    parse_state,
    write_state,
)

STATE = TargetState(
    generation=3,
    snapshot_generation=2,
    listed_from=12.5,
    full_from=10.0,
    includes_soft_deleted=True,
    refresher_pid=4242,
    failures=0,
    last_error=None,
    size=1000,
)


def test_a_written_state_reads_back_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "t.state"
    write_state(path, STATE)
    assert StateView(path).read() == STATE
    assert [p.name for p in tmp_path.iterdir()] == ["t.state"]


def test_a_view_sees_each_replacement(tmp_path: Path) -> None:
    path = tmp_path / "t.state"
    write_state(path, STATE)
    view = StateView(path)
    assert view.read() == STATE
    newer = dataclasses.replace(STATE, generation=4, failures=1, last_error="Nova 503")
    write_state(path, newer)
    assert view.read() == newer


def test_a_missing_state_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(StateUnreadable):
        StateView(tmp_path / "none.state").read()


GOOD = dataclasses.asdict(STATE)
BAD = {
    "not JSON": b"{",
    "truncated": json.dumps(GOOD).encode()[:-5],
    "a list": b"[]",
    "a field missing": json.dumps({k: v for k, v in GOOD.items() if k != "size"}).encode(),
    "an extra field": json.dumps({**GOOD, "surprise": 1}).encode(),
    "a string for a number": json.dumps({**GOOD, "listed_from": "12.5"}).encode(),
    "a bool for a count": json.dumps({**GOOD, "failures": True}).encode(),
    "a number for a bool": json.dumps({**GOOD, "includes_soft_deleted": 1}).encode(),
    "a null pid": json.dumps({**GOOD, "refresher_pid": None}).encode(),
}


@pytest.mark.parametrize("case", BAD)
def test_malformed_state_is_unreadable(tmp_path: Path, case: str) -> None:
    path = tmp_path / "t.state"
    path.write_bytes(BAD[case])
    with pytest.raises(StateUnreadable):
        StateView(path).read()
    with pytest.raises(StateUnreadable):
        parse_state(BAD[case])
