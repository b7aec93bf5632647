"""One child process of the master, followed through a pidfd (not through waitpid).

NOTE: Gunicorn's master reaps with ``waitpid(-1)``, which can claim our child's
exit status first. A pidfd becomes readable when the process ends whoever
reaps it, and it never names a recycled pid; the status is read from it when
still there, else reported as unknown.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Mapping, Sequence

from instanceapi.serve.child import LIFELINE_ENV, READY_ENV


class ChildProcess:
    """A spawned child with its pidfd, the master's lifeline end and the "ready" pipe.

    Raises OSError when it cannot be started (nothing is left behind then).
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], started: float) -> None:
        lifeline_r, self._lifeline = os.pipe()
        self._ready, ready_w = os.pipe()
        os.set_blocking(self._ready, False)
        env = {**env, LIFELINE_ENV: str(lifeline_r), READY_ENV: str(ready_w)}
        try:
            # Fork + exec: no Gunicorn state, sockets or threads cross into the child.
            self._popen = subprocess.Popen(argv, env=env, pass_fds=(lifeline_r, ready_w))  # noqa: S603
        except BaseException:
            for fd in (self._lifeline, self._ready):
                os.close(fd)
            raise
        finally:
            os.close(lifeline_r)
            os.close(ready_w)
        self.pid = self._popen.pid
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:  # no pidfd (Linux < 5.3): do not leave an untracked child
            self._popen.kill()
            self._popen.wait()
            for fd in (self._lifeline, self._ready):
                os.close(fd)
            raise
        self.started = started
        self.ready = False
        self.exit: str | None = None  # how it ended, once known

    def poll_ready(self) -> bool:
        """Return True once the child announced it is ready (reads the pipe without blocking)."""
        if not self.ready:
            with contextlib.suppress(BlockingIOError):
                self.ready = os.read(self._ready, 1) == b"\1"
        return self.ready

    def ended(self) -> bool:
        """Return True once the process ended (collecting its exit status if still there)."""
        if self.exit is None and _readable(self._pidfd):
            self.exit = self._collect()
        return self.exit is not None

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` unless the process already ended (through the pidfd: never a reused pid)."""
        if not self.ended():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)

    def wait_ended(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the process to end; return whether it did."""
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        poller.poll(int(timeout * 1000))
        return self.ended()

    def close(self) -> None:
        """Release the descriptors (closing the lifeline tells a live child to exit)."""
        for fd in (self._pidfd, self._lifeline, self._ready):
            os.close(fd)

    def _collect(self) -> str:
        try:
            result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            result = None
        if result is None:
            self._popen.returncode = -1  # reaped by Gunicorn: keep Popen from waiting later
            return "exit status unknown (reaped by Gunicorn)"
        self._popen.returncode = result.si_status
        if result.si_code == os.CLD_EXITED:
            return f"exited with code {result.si_status}"
        return f"killed by {signal.Signals(result.si_status).name}"


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
