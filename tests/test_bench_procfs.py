"""The benchmark's /proc readings: PSS and USS per process, and the whole process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from benchmarks.memory import booted_workers, read_service
from benchmarks.procfs import descendants, memory, parse_rollup, service_memory

# A parent that starts a child (from a second thread, as a master's helper thread
# might) and a grandchild, then waits; each touches 20 MB of its own memory.
TREE = """
import subprocess, sys, threading, time
blob = bytearray(20_000_000)
def spawn():
    code = "import time; b = bytearray(20_000_000); time.sleep(60)"
    child = "import subprocess, sys, time; b = bytearray(20_000_000); " \\
        f"subprocess.Popen([sys.executable, '-c', {code!r}]); time.sleep(60)"
    subprocess.Popen([sys.executable, "-c", child])
threading.Thread(target=spawn).start()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def tree() -> Iterator[int]:
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == b"ready"
        for _ in range(100):  # the grandchild starts within 10 s
            if len(descendants(parent.pid)) == 2:
                break
            time.sleep(0.1)
        yield parent.pid
    finally:
        for pid in reversed(descendants(parent.pid)):
            os.kill(pid, 9)
        parent.kill()
        parent.wait()


def test_the_whole_tree_is_found_and_its_pss_adds_up(tree: int) -> None:
    pids = [tree, *descendants(tree)]
    assert len(pids) == 3
    readings = service_memory(tree)
    assert set(readings) == set(pids)
    for figures in readings.values():
        # Each holds 20 MB of its own: private, counted in full in its PSS.
        assert figures.uss >= 19_000 and figures.pss >= figures.uss
        assert figures.rss >= figures.pss
    service = read_service(tree, {descendants(tree)[0]}, peak=True)
    assert service.total.pss == sum(m.pss for m in readings.values())
    assert [service.role(p) for p in pids] == ["master", "worker", "other"]
    assert set(service.rss_peak) == set(pids)


def test_uss_is_private_clean_plus_dirty() -> None:
    fields = {"Rss": 100, "Pss": 60, "Private_Clean": 10, "Private_Dirty": 30, "Pss_Anon": 25}
    figures = parse_rollup(fields)
    assert (figures.rss, figures.pss, figures.uss, figures.pss_anon) == (100, 60, 40, 25)
    own = memory(os.getpid())
    assert own.rss >= own.pss >= own.uss > 0


def test_workers_are_those_gunicorn_says_it_booted() -> None:
    log = "[1] [INFO] Booting worker with pid: 41\nnoise\n[1] [INFO] Booting worker with pid: 43\n"
    assert booted_workers(log) == {41, 43}
