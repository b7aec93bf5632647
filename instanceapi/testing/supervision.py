"""A stand-in refresher and a trivial WSGI app, for testing the master's supervision.

Run as ``python -m instanceapi.testing.supervision`` by the supervising master:
appends ``start|ready|term|eof|refuse <pid>`` lines to the file named by
``SUPERVISION_LOG``; refuses to start (exit 2, like an invalid configuration)
while ``<log>.refuse`` exists; otherwise announces it is ready and waits until
TERM or until the master is gone (lifeline EOF).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

from instanceapi.serve import child

LOG_ENV = "SUPERVISION_LOG"
INVALID_CONFIG = 2


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with 200 ok."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _note(log: Path, event: str) -> None:
    with log.open("a", encoding="ascii") as f:
        f.write(f"{event} {os.getpid()}\n")


def main() -> int:
    """Log start, then run until TERM or lifeline EOF; exit 2 while refusing."""
    log = Path(os.environ[LOG_ENV])
    _note(log, "start")
    if log.with_name(log.name + ".refuse").exists():
        _note(log, "refuse")
        return INVALID_CONFIG

    def on_term(signum: int, frame: FrameType | None) -> None:
        _note(log, "term")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    child.announce_ready()
    _note(log, "ready")
    while not child.master_gone(1.0):
        pass
    _note(log, "eof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
