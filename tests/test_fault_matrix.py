"""The fault matrix, end to end: every upstream fault, with and without a warm index.

Real Gunicorn, real keystoneauth1 + novaclient, the simulated cloud with fault
injection, all on 127.0.0.1. The cases, the services and the expected answers
live in benchmarks/fault_matrix.py, which also prints the whole table
(docs/fault-matrix.md). Each case asserts: no 404 for an existing instance;
404 for a deleted one only when every target confirmed it; 500 (503 for
overload) with a body naming the fault otherwise; the healthy answers back,
without a restart, once the fault is removed.

Two labs (a cloud and three services each) are shared by every case: each case
asks about a deleted instance nobody asked about before, and removes its fault
and waits for recovery before the next one starts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.fault_matrix import (
    CASES,
    MODES,
    Case,
    Lab,
    labs,
    run_case,
    run_uncovered_region,
    run_worker_kill,
    table,
)


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[dict[str, Lab]]:
    with labs(tmp_path_factory.mktemp("fault-matrix")) as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(running: dict[str, Lab], case: Case) -> None:
    rows = run_case(running[case.lab], case)
    assert [r.mode for r in rows] == list(MODES)
    assert sum(r.false_404s for r in rows) == 0, table(rows)
    assert all(not r.problems for r in rows), table(rows)


def test_a_gunicorn_worker_killed_mid_request(running: dict[str, Lab]) -> None:
    row = run_worker_kill(running["main"])
    assert row.false_404s == 0, table([row])
    assert not row.problems, table([row])
    # The request the killed worker held got no answer at all: never a 404.
    assert row.answers["deleted"].status == "reset"


def test_a_catalog_region_the_configuration_does_not_name(running: dict[str, Lab]) -> None:
    row = run_uncovered_region(running["main"])
    assert row.false_404s == 0, table([row])
    assert not row.problems, table([row])
    assert row.answers["existing R2"].status == 500
