"""The store's directory per configuration and its one-writer lock, with real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from instanceapi.check.store.layout import StoreBusy, StoreLayout, WriterLock

HOLDER = """
import sys
from pathlib import Path
from instanceapi.check.store.layout import StoreLayout, WriterLock
with WriterLock(StoreLayout(Path(sys.argv[1]))):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_each_set_of_targets_has_its_own_private_directory(tmp_path: Path) -> None:
    one = StoreLayout.for_targets(tmp_path, ["b", "a"])
    assert one == StoreLayout.for_targets(tmp_path, ["a", "b"])
    assert one != StoreLayout.for_targets(tmp_path, ["a", "b", "c"])
    assert one.snapshot("a") != one.snapshot("b")
    assert one.snapshot("a").with_suffix(".state") == one.state("a")
    one.create()
    assert one.directory.stat().st_mode & 0o777 == 0o700


def test_one_writer_at_a_time_and_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    layout = StoreLayout.for_targets(tmp_path, ["a"])
    assert not layout.writer_running()
    argv = [sys.executable, "-c", HOLDER, str(layout.directory)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        assert layout.writer_running()
        with pytest.raises(StoreBusy), WriterLock(layout, wait=False):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert not layout.writer_running()
    with WriterLock(layout, wait=False):
        assert layout.writer_running()
    assert not layout.writer_running()
