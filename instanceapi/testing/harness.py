"""Run the real service under real Gunicorn on loopback (demo, tests, benchmarks)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from instanceapi.serve.command import gunicorn_command
from instanceapi.testing.cloud import SimulatedCloud

_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
_BOOTED = re.compile(r"Booting worker with pid: \d+")
_REFRESHER = re.compile(r"refresher started \(pid (\d+)\)")


def service_env(
    cloud: SimulatedCloud,
    directory: Path,
    *,
    user: str = "admin",
    clouds: str = "demo",
    timeout: str = "2",
    retries: str = "0",
    **extra: str,
) -> dict[str, str]:
    """Return the environment of a service pointed at `cloud` as `user`.

    Its clouds.yaml is written into `directory`.
    """
    path = cloud.write_clouds_yaml(directory / f"clouds-{user}.yaml", cloud_name="demo", user=user)
    return {
        "OS_CLIENT_CONFIG_FILE": str(path),
        "INSTANCEAPI_CLOUDS": clouds,
        "INSTANCEAPI_TIMEOUT": timeout,
        "INSTANCEAPI_RETRIES": retries,
        **extra,
    }


def terminate(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a child process: TERM, then KILL if it lingers past `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServiceError(RuntimeError):
    """The service did not come up; the message carries Gunicorn's log."""


class ServiceProcess:
    """Gunicorn serving instanceapi on 127.0.0.1, on a port chosen at run time.

    ``env`` is added to this process's environment (minus any ``INSTANCEAPI_*``
    and ``OS_*`` of ours, so the caller's shell cannot leak into a test).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int = 0,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        ready_path: str = "/healthz",
        startup_timeout: float = 30.0,
    ) -> None:
        self._env = dict(env)
        self._port = port
        self._workers = workers
        self._extra_args = extra_args
        self._ready_path = ready_path
        self._startup_timeout = startup_timeout
        self._log = tempfile.NamedTemporaryFile(prefix="instanceapi-", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log_text(self) -> str:
        """Return everything Gunicorn and the app logged so far."""
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    @property
    def refresher_pids(self) -> list[int]:
        """Return the pid of every refresher the master started so far, oldest first."""
        return [int(pid) for pid in _REFRESHER.findall(self.log_text)]

    def worker_pids(self) -> set[int]:
        """Return the pids of the master's live workers (its children but the refresher)."""
        master = self._running().pid
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            return set()
        return {int(pid) for pid in children} - set(self.refresher_pids)

    def start(self) -> None:
        """Start Gunicorn and wait until it answers `ready_path`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTANCEAPI_", "OS_"))}
        env.update(
            {
                "INSTANCEAPI_BIND": f"127.0.0.1:{self._port}",
                "INSTANCEAPI_WORKERS": str(self._workers),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self._env)
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            # Gunicorn's own log at INFO whatever the settings: its "Listening at"
            # line tells the port.
            gunicorn_command("--log-level", "info", *self._extra_args),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.url = f"http://127.0.0.1:{self._wait_for_port()}"
            self._wait_until_answering()
            self._wait_for_workers()
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ fails: never leak Gunicorn
            raise

    def stop(self) -> None:
        """Stop Gunicorn gracefully (TERM), killing it if it lingers."""
        if self.process is not None:
            terminate(self.process)
        self._log.close()

    def reload(self) -> None:
        """Ask the Gunicorn master for a graceful reload (HUP)."""
        self._running().send_signal(signal.SIGHUP)

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log_text)
            if found:
                return int(found.group(1))
            self._fail_if_exited()
            time.sleep(0.05)
        raise ServiceError(f"Gunicorn did not start listening:\n{self.log_text}")

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            self._fail_if_exited()
            try:
                with urllib.request.urlopen(self.url + self._ready_path, timeout=5):  # noqa: S310
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise ServiceError(f"{self.url}{self._ready_path} never answered 200:\n{self.log_text}")

    def _wait_for_workers(self) -> None:
        """Wait until every worker has booted, not only the one that answered.

        NOTE: on a loaded machine Gunicorn may fork the second worker after the
        first one answered; a test that records the workers' pids then would see
        the late one as a replacement.
        """
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            self._fail_if_exited()
            if len(_BOOTED.findall(self.log_text)) >= self._workers:
                return
            time.sleep(0.05)
        raise ServiceError(f"not every worker booted:\n{self.log_text}")

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise ServiceError("the service was not started")
        return self.process

    def _fail_if_exited(self) -> None:
        if self._running().poll() is not None:
            code = self._running().returncode
            raise ServiceError(f"Gunicorn exited with {code}:\n{self.log_text}")
