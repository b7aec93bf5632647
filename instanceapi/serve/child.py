"""The supervised child's side of the protocol with the master (imports nothing of ours).

The master passes two pipe ends, named in the environment:

- the lifeline (read end): the master alone holds the write end, so EOF means
  the master is gone, even killed with SIGKILL; the child then exits;
- "ready" (write end): one byte once the child validated its configuration,
  so that a reload replaces a running child only by one that started.
"""

from __future__ import annotations

import os
import select

# NOTE: not INSTANCEAPI_*: Settings.from_env rejects unknown INSTANCEAPI_ variables,
# and the refresher child reads its settings from this same environment.
LIFELINE_ENV = "IAPI_SERVE_LIFELINE_FD"
READY_ENV = "IAPI_SERVE_READY_FD"


def announce_ready() -> None:
    """Tell the master this child started; a no-op when not run by the master."""
    fd = _fd(READY_ENV)
    if fd is not None:
        try:
            os.write(fd, b"\1")
        finally:
            os.close(fd)
            os.environ.pop(READY_ENV, None)


def master_gone(timeout: float) -> bool:
    """Wait up to `timeout` s; return True once the lifeline reports EOF (master gone).

    Without a lifeline (run by hand) it only waits and returns False.
    """
    fd = _fd(LIFELINE_ENV)
    poller = select.poll()
    if fd is not None:
        poller.register(fd, select.POLLIN | select.POLLHUP)
    if not poller.poll(int(timeout * 1000)):
        return False
    return fd is not None and os.read(fd, 1) == b""


def _fd(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None
