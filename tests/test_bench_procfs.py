"""The benchmark's /proc readings: PSS and USS per process, and the whole process tree."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.memory import ServiceMemory, booted_workers, read_service
from benchmarks.procfs import (
    Memory,
    descendants,
    directory_kib,
    memory,
    parse_rollup,
    service_memory,
)

# A parent that starts a child (from a second thread, as a master's helper thread
# might), which starts a grandchild; each touches 20 MB of its own memory, then
# says "ready" on the stdout they share, and waits.
HOLD = "b = bytearray(20_000_000); print('ready', flush=True); time.sleep(60)"
GRANDCHILD = f"import time; {HOLD}"
CHILD = (
    "import subprocess, sys, time; "
    f"subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}]); {HOLD}"
)
TREE = f"""
import subprocess, sys, threading, time
threading.Thread(target=subprocess.Popen, args=([sys.executable, "-c", {CHILD!r}],)).start()
{HOLD}
"""


@pytest.fixture
def tree() -> Iterator[int]:
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        for _ in range(3):  # each process says so once it holds its memory
            assert parent.stdout.readline().strip() == b"ready"
        yield parent.pid
    finally:
        for pid in reversed(descendants(parent.pid)):
            os.kill(pid, 9)
        parent.kill()
        parent.wait()


def test_the_whole_tree_is_found_and_its_pss_adds_up(tree: int) -> None:
    below = descendants(tree)
    assert len(below) == 2
    readings = service_memory(tree)
    assert set(readings) == {tree, *below}
    for figures in readings.values():
        # Each holds 20 MB of its own: private, counted in full in its PSS.
        assert figures.uss >= 19_000 and figures.pss >= figures.uss
        assert figures.rss >= figures.pss
    service = read_service(tree, {below[0]}, peak=True)
    assert service.total.pss == sum(m.pss for m in service.processes.values())
    assert [service.role(p) for p in (tree, *below)] == ["master", "worker", "other"]
    named = read_service(tree, {below[0]}, {below[1]})
    assert named.role(below[1]) == "refresher" and named.of("refresher").keys() == {below[1]}
    assert set(service.rss_peak) == {tree, *below}


def test_uss_is_private_clean_plus_dirty() -> None:
    fields = {"Rss": 100, "Pss": 60, "Private_Clean": 10, "Private_Dirty": 30, "Pss_Anon": 25}
    figures = parse_rollup({**fields, "Pss_Shmem": 7})
    assert (figures.rss, figures.pss, figures.uss, figures.pss_anon) == (100, 60, 40, 25)
    assert figures.pss_shmem == 7
    own = memory(os.getpid())
    assert own.rss >= own.pss >= own.uss > 0


def test_workers_are_those_gunicorn_says_it_booted() -> None:
    log = "[1] [INFO] Booting worker with pid: 41\nnoise\n[1] [INFO] Booting worker with pid: 43\n"
    assert booted_workers(log) == {41, 43}


def test_the_service_counts_tmpfs_files_once(tmp_path: Path) -> None:
    (tmp_path / "store-x").mkdir()
    (tmp_path / "store-x" / "a.snap").write_bytes(b"x" * 409_600)
    assert 400 <= directory_kib(tmp_path) <= 404
    mapped = Memory(rss=500, pss=300, uss=100, pss_anon=150, pss_shmem=120)
    service = ServiceMemory(1, {1: mapped}, frozenset(), runtime_kib=400)
    assert service.service_kib == 300 - 120 + 400
