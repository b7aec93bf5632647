"""The master supervises one refresher child: a real Gunicorn on 127.0.0.1, a stand-in child.

Counts, not times: each step waits (bounded) for the child's own log lines
(``start|ready|term|eof|refuse <pid>``, see instanceapi/testing/supervision.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from instanceapi.config import Settings
from instanceapi.serve.__main__ import MODULE_ENV, refresher_argv
from instanceapi.serve.child import LIFELINE_ENV, READY_ENV
from instanceapi.serve.refresher_process import Backoff, RefresherChild

CHILD = "instanceapi.testing.supervision"
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def wait_for(condition: Callable[[], bool], what: str, attempts: int = 300) -> None:
    """Poll `condition` up to `attempts` times, 0.1 s apart; fail naming `what`."""
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def alive(pid: int) -> bool:
    """Return True while `pid` runs our stand-in child (not a zombie, not a recycled pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and CHILD in process.cmdline()
    except psutil.NoSuchProcess:
        return False


@dataclass
class Service:
    """A running `python -m instanceapi.serve` and its files."""

    process: subprocess.Popen[bytes]
    log: Path  # the child's event log
    out: Path  # the master's log

    def events(self, kind: str) -> list[int]:
        """Return the pids that logged `kind`, in order."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="ascii").split()
        return [
            int(pid) for event, pid in zip(lines[::2], lines[1::2], strict=True) if event == kind
        ]

    def master_log(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def children_alive(self) -> list[int]:
        return [pid for pid in set(self.events("start")) if alive(pid)]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    conf = tmp_path / "conf.py"
    conf.write_text(
        'bind = ["127.0.0.1:0"]\nworkers = 1\nworker_class = "sync"\n'
        f'proc_name = "i12-supervision-{os.getpid()}"\ncontrol_socket_disable = True\n'
    )
    log, out = tmp_path / "child.log", tmp_path / "master.log"
    env = {**os.environ, MODULE_ENV: CHILD, "SUPERVISION_LOG": str(log)}
    argv = [sys.executable, "-m", "instanceapi.serve", "-c", str(conf), f"{CHILD}:app"]
    with out.open("wb") as sink:
        process = subprocess.Popen(argv, env=env, stdout=sink, stderr=sink, start_new_session=True)
    running = Service(process, log, out)
    try:
        wait_for(lambda: LISTENING.search(running.master_log()) is not None, "Gunicorn listening")
        wait_for(lambda: len(running.events("ready")) == 1, "the first child ready")
        port = int(LISTENING.findall(running.master_log())[0])
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).text == "ok"
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for pid in running.children_alive():
            os.kill(pid, signal.SIGKILL)


def test_a_killed_refresher_is_started_again(service: Service) -> None:
    first = service.events("ready")[0]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(service.events("ready")) == 2, "a second child ready")
    assert not alive(first)
    assert service.children_alive() == [service.events("ready")[1]]
    assert f"refresher (pid {first}) killed by SIGKILL" in service.master_log()


def test_hup_replaces_the_refresher_by_a_new_one_that_started(service: Service) -> None:
    first = service.events("ready")[0]
    service.process.send_signal(signal.SIGHUP)
    wait_for(lambda: service.events("term") == [first], "the first child told to stop")
    wait_for(lambda: not alive(first), "the first child gone")
    second = service.events("ready")[1]
    assert service.events("start") == [first, second]
    assert service.children_alive() == [second]


def test_hup_keeps_the_running_refresher_when_the_new_one_refuses_to_start(
    service: Service,
) -> None:
    first = service.events("ready")[0]
    refuse = service.log.with_name(service.log.name + ".refuse")
    refuse.touch()
    service.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "the previous one keeps running" in service.master_log(), "the refusal logged")
    assert len(service.events("refuse")) == 1
    assert service.events("term") == []
    assert service.children_alive() == [first]
    refuse.unlink()
    service.process.send_signal(signal.SIGHUP)
    wait_for(lambda: service.events("term") == [first], "the first child replaced")
    assert len(service.events("ready")) == 2


def test_term_stops_the_master_and_the_refresher(service: Service) -> None:
    child = service.events("ready")[0]
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0
    assert service.events("term") == [child]
    wait_for(lambda: not alive(child), "the child gone")


def test_a_master_killed_outright_leaves_no_refresher_behind(service: Service) -> None:
    child = service.events("ready")[0]
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(timeout=10)
    # EOF comes once the master and the workers it forked (which inherited the
    # write end) are gone: workers exit when they see their parent changed.
    wait_for(lambda: service.events("eof") == [child], "the child saw the lifeline close")
    wait_for(lambda: not alive(child), "the child gone")


# -- the supervisor alone, with a fake clock ---------------------------------------------


class Lines:
    """A logger that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)

    def error(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)


def test_backoff_doubles_on_each_death_and_restarts_from_one_second_after_a_stable_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPERVISION_LOG", str(tmp_path / "child.log"))
    now = [100.0]
    log = Lines()
    supervisor = RefresherChild(
        [sys.executable, "-m", CHILD], log, backoff=Backoff(stable_after=50.0), clock=lambda: now[0]
    )
    try:
        delays = []
        for _ in range(3):
            supervisor.tend()
            child = supervisor.current
            assert child is not None
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait_ended(30)
            spawned = _ticks_until_spawned(supervisor, now)
            delays.append(spawned)
        now[0] += 60.0  # the third child ran past stable_after
        child = supervisor.current
        assert child is not None
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait_ended(30)
        delays.append(_ticks_until_spawned(supervisor, now))
    finally:
        supervisor.stop()
    assert delays == [1.0, 2.0, 4.0, 1.0]
    assert sum("killed by SIGKILL" in line for line in log.lines) == 4


def _ticks_until_spawned(supervisor: RefresherChild, now: list[float]) -> float:
    """Advance the fake clock 0.5 s per tend(); return the time until a new child started."""
    before = supervisor.current
    supervisor.tend()  # notices the death
    waited = 0.0
    while supervisor.current is None or supervisor.current is before:
        assert waited < 120
        now[0] += 0.5
        waited += 0.5
        supervisor.tend()
    return waited


def test_an_invalid_refresher_module_stops_start_up_naming_the_setting() -> None:
    assert refresher_argv({}) == [sys.executable, "-m", "instanceapi.check.refresher"]
    assert refresher_argv({MODULE_ENV: ""}) is None
    assert refresher_argv({MODULE_ENV: CHILD}) == [sys.executable, "-m", CHILD]
    with pytest.raises(ValueError, match=MODULE_ENV):
        refresher_argv({MODULE_ENV: "x; rm -rf /"})
    result = subprocess.run(
        [sys.executable, "-m", "instanceapi.serve", f"{CHILD}:app"],
        env={**os.environ, MODULE_ENV: "not a module"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert MODULE_ENV.encode() in result.stderr


def test_a_refresher_that_cannot_be_started_is_logged_and_retried_with_backoff(
    tmp_path: Path,
) -> None:
    now = [0.0]
    log = Lines()
    missing = str(tmp_path / "no-such-python")
    supervisor = RefresherChild([missing, "-m", CHILD], log, clock=lambda: now[0])
    attempts = []
    for tick in range(8):  # 0.0 ... 3.5 s in steps of 0.5 s
        now[0] = tick * 0.5
        before = len(log.lines)
        supervisor.tend()
        attempts += [now[0]] * (len(log.lines) - before)
    assert supervisor.current is None
    assert attempts == [0.0, 1.0, 3.0]  # then 4 s later
    assert all("could not be started" in line for line in log.lines)


def test_check_config_behaves_as_in_gunicorn_and_starts_no_refresher(tmp_path: Path) -> None:
    log, conf = tmp_path / "child.log", tmp_path / "conf.py"
    conf.write_text("workers = 1\n")
    env = {**os.environ, MODULE_ENV: CHILD, "SUPERVISION_LOG": str(log)}
    command = [sys.executable, "-m", "instanceapi.serve", "-c", str(conf), "--check-config"]
    ok = subprocess.run(
        [*command, f"{CHILD}:app"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    broken = subprocess.run(
        [*command, f"{CHILD}:missing"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, broken.returncode) == (0, 1)
    assert not log.exists()


def test_the_variables_the_master_adds_pass_the_service_settings() -> None:
    # The refresher child reads its settings from the environment it is given.
    env = {"INSTANCEAPI_CLOUDS": "demo", MODULE_ENV: CHILD, LIFELINE_ENV: "5", READY_ENV: "6"}
    assert Settings.from_env(env).regions
