"""The simulated cloud in its own process, read and driven through its ``/_sim/`` control API.

A separate process keeps the cloud's GIL away from the service and the load
generator: the cloud sleeps its latency in its own threads, as a real Nova would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from instanceapi.testing.harness import terminate

#: Populating a million servers takes 6-10 s on an idle machine; leave room for a busy one.
START_TIMEOUT = 300.0
#: Server ids announced: enough for the sweep lists (the whole list at a million is 39 MB).
SAMPLE = 20_000


@dataclass(frozen=True)
class CloudInfo:
    """What the cloud announced: its addresses, clouds.yaml and server ids by fate.

    ``populated`` is a sample of the ``--servers`` ids (at most SAMPLE of them);
    ``populated_total`` counts them all.
    """

    clouds_yaml: str
    control: str
    existing: list[str]
    deleted: list[str] = field(default_factory=list)
    populated: list[str] = field(default_factory=list)
    populated_total: int = 0


class CloudProcess:
    """``python -m instanceapi.testing`` with N servers and Nova latency, until stopped."""

    def __init__(self, servers: int, *, latency_ms: float, per_server_ms: float) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="instanceapi-bench-")
        self._args = [
            f"--servers={servers}",
            f"--clouds-yaml={Path(self._dir.name) / 'clouds.yaml'}",
            f"--latency-ms={latency_ms}",
            f"--per-server-ms={per_server_ms}",
            f"--sample={SAMPLE}",
        ]
        self._out = Path(self._dir.name) / "announce.json"
        self.process: subprocess.Popen[bytes] | None = None
        self.info: CloudInfo | None = None

    def __enter__(self) -> CloudInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> CloudInfo:
        """Start the cloud and wait (bounded) for its announcement line."""
        command = [sys.executable, "-m", "instanceapi.testing", *self._args]
        with self._out.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        try:
            self.info = self._wait_for_announcement()
        except BaseException:
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        """Stop the cloud (TERM, then KILL if it lingers) and remove its files."""
        if self.process is not None:
            terminate(self.process)
        self._dir.cleanup()

    def _wait_for_announcement(self) -> CloudInfo:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self._out.read_text(encoding="utf-8")
            if text.endswith("\n"):
                data = json.loads(text)
                return CloudInfo(
                    data["clouds_yaml"],
                    data["control"],
                    data["existing"],
                    data["deleted"],
                    data["populated"],
                    data["populated_total"],
                )
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the simulated cloud exited with {self.process.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"the simulated cloud did not announce itself in {START_TIMEOUT:.0f}s")


class Control:
    """Client of the cloud's ``/_sim/`` control API (counters, faults, servers)."""

    def __init__(self, url: str) -> None:
        self._url = url.rstrip("/")

    def counts(self) -> Counter[str]:
        """Return the request counters (``nova.show``, ``keystone.token``, ...)."""
        return Counter(self._call("GET", "/_sim/counts"))

    def delete_server(self, server_id: str) -> None:
        """Delete a server outright (Nova answers 404 for it from now on)."""
        self._call("DELETE", f"/_sim/servers/{server_id}")

    def delay_nova(self, seconds: float) -> None:
        """Make every Nova answer wait `seconds` (0: back to the configured latency)."""
        if seconds > 0:
            self._call("POST", "/_sim/fault", {"service": "nova", "delay": seconds})
        else:
            self._call("POST", "/_sim/clear", {})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
            raw = answer.read()
        return json.loads(raw) if raw else None


def upstream_delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """Return the Keystone and Nova request counts between two snapshots."""
    keys = (
        "nova.total",
        "nova.show",
        "nova.list",
        "nova.servers_listed",
        "nova.list_changes_since",
        "keystone.total",
        "keystone.token",
    )
    return {key: after[key] - before[key] for key in keys}
