"""Keep one refresher child alive beside Gunicorn's workers (driven by the master's loop).

- ``tend()`` (every master loop turn, at least once a second): notice a death
  through the pidfd, log it, and start a new child once its backoff passed
  (1, 2, 4 ... 60 s; back to 1 s after 5 minutes alive);
- ``restart()`` (on HUP): start a new child first and retire the old one only
  when the new one announced it is ready; a new child that fails leaves the old
  one running, logged as an error;
- ``stop()`` (master exit): TERM, wait a bounded time, KILL.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from instanceapi.serve.process import ChildProcess


class Log(Protocol):
    """What is used of Gunicorn's logger (a `logging.Logger` fits too)."""

    def info(self, msg: str, *args: object) -> None: ...
    def error(self, msg: str, *args: object) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """How soon a dead child is started again."""

    first: float = 1.0
    longest: float = 60.0
    stable_after: float = 300.0  # alive this long: the next death starts from `first`
    ready_within: float = 60.0  # a replacement not ready by then is abandoned
    term_grace: float = 5.0  # TERM, then KILL after this long


class RefresherChild:
    """The one supervised child process (the refresher) of a Gunicorn master."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Log,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.argv = list(argv)
        #: Called with the pid of each child that ended (its metrics files are then stale).
        self._on_exit = on_exit
        self.log = log
        self._policy = backoff or Backoff()
        self._clock = clock
        self._delay = self._policy.first
        self._next_start = 0.0
        self.current: ChildProcess | None = None
        self.pending: ChildProcess | None = None  # a replacement not yet ready
        self._retiring: list[tuple[ChildProcess, float]] = []  # (process, KILL after)
        self._stopping = False

    def tend(self) -> None:
        """Notice deaths and readiness; start the child if it is due."""
        now = self._clock()
        self._tend_retiring(now)
        self._tend_pending(now)
        current = self.current
        if current is not None and current.ended():
            self._lost(current, now)
        elif current is not None and not current.ready and current.poll_ready():
            self.log.info("refresher (pid %s) ready", current.pid)
        due = now >= self._next_start and not self._stopping
        if self.current is None and self.pending is None and due:
            self.current = self._spawn(now)
            if self.current is None:
                self._schedule(now)

    def restart(self) -> None:
        """Replace the child by a new one (which reads the configuration afresh)."""
        now = self._clock()
        if self._stopping:
            return
        if self.pending is not None:
            self._retire(self.pending, now)
        if self.current is None:
            self._delay, self._next_start = self._policy.first, now
        else:
            self.pending = self._spawn(now)

    def terminate(self) -> None:
        """Send TERM to every child and start no new one (stop() then waits for them)."""
        self._stopping = True
        for child in self._children():
            child.signal(signal.SIGTERM)

    def stop(self) -> None:
        """Stop every child: TERM, wait up to the grace period, then KILL."""
        self.terminate()
        children = self._children()
        self.current, self.pending, self._retiring = None, None, []
        deadline = self._clock() + self._policy.term_grace
        for child in children:
            if not child.wait_ended(max(0.0, deadline - self._clock())):
                child.signal(signal.SIGKILL)
                child.wait_ended(self._policy.term_grace)
            self.log.info("refresher (pid %s) stopped: %s", child.pid, child.exit)
            self._close(child)

    def reap(self) -> None:
        """Collect exit statuses now (before Gunicorn's waitpid(-1) can take them)."""
        for child in self._children():
            child.ended()

    def _close(self, child: ChildProcess) -> None:
        child.close()
        try:
            self._on_exit(child.pid)
        except Exception as ex:  # a hook's failure must not stop the supervision
            self.log.error("refresher (pid %s): exit hook failed: %s", child.pid, ex)

    def _children(self) -> list[ChildProcess]:
        children = [c for c in (self.current, self.pending) if c is not None]
        return children + [c for c, _ in self._retiring]

    def _spawn(self, now: float) -> ChildProcess | None:
        try:
            child = ChildProcess(self.argv, os.environ, now)
        except OSError as ex:
            self.log.error("refresher could not be started: %s", ex)
            return None
        self.log.info("refresher started (pid %s)", child.pid)
        return child

    def _lost(self, child: ChildProcess, now: float) -> None:
        if now - child.started >= self._policy.stable_after:
            self._delay = self._policy.first
        self.log.error(
            "refresher (pid %s) %s; starting a new one in %.0f s",
            child.pid,
            child.exit,
            self._delay,
        )
        self._schedule(now)
        self._close(child)
        self.current = None

    def _schedule(self, now: float) -> None:
        """Start the next child after the current delay, and double the delay."""
        self._next_start = now + self._delay
        self._delay = min(self._delay * 2, self._policy.longest)

    def _tend_pending(self, now: float) -> None:
        new = self.pending
        if new is None:
            return
        if new.poll_ready():
            self.log.info("refresher (pid %s) ready; retiring the previous one", new.pid)
            if self.current is not None:
                self._retire(self.current, now)
            self.current, self.pending = new, None
        elif new.ended() or now - new.started >= self._policy.ready_within:
            what = new.exit or "was not ready in time"
            self.log.error(
                "new refresher (pid %s) %s; the previous one keeps running", new.pid, what
            )
            self._retire(new, now)
            self.pending = None

    def _retire(self, child: ChildProcess, now: float) -> None:
        child.signal(signal.SIGTERM)
        self._retiring.append((child, now + self._policy.term_grace))

    def _tend_retiring(self, now: float) -> None:
        still: list[tuple[ChildProcess, float]] = []
        for child, kill_after in self._retiring:
            if child.ended():
                self.log.info("previous refresher (pid %s) %s", child.pid, child.exit)
                self._close(child)
                continue
            if now >= kill_after:
                child.signal(signal.SIGKILL)
            still.append((child, kill_after))
        self._retiring = still
