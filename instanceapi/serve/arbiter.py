"""Gunicorn's master, also supervising the refresher child (four overridden methods).

No thread in the master: the refresher is tended from Gunicorn's own loop,
which turns at least once a second and at once on SIGCHLD.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from gunicorn.arbiter import Arbiter

from instanceapi.serve.refresher_process import Backoff, RefresherChild


class SupervisingArbiter(Arbiter):  # type: ignore[misc]  # gunicorn ships no types
    """A Gunicorn arbiter that keeps one refresher child process alive."""

    def __init__(self, app: Any, refresher_argv: Sequence[str], backoff: Backoff | None = None):
        super().__init__(app)
        self.refresher = RefresherChild(
            refresher_argv, self.log, backoff=backoff, on_exit=self._refresher_exited
        )

    def _refresher_exited(self, pid: int) -> None:
        """Run the configuration's child_exit hook for the refresher, as for a worker."""
        self.cfg.child_exit(self, SimpleNamespace(pid=pid))

    def manage_workers(self) -> None:
        """Keep the workers, then the refresher, running."""
        super().manage_workers()
        self.refresher.log = self.log  # a reload may have set up a new logger
        self.refresher.tend()

    def handle_chld(self) -> None:
        """Collect the refresher's exit status before Gunicorn's waitpid(-1) takes it."""
        self.refresher.reap()
        super().handle_chld()

    # NOTE: SIGCLD aliases SIGCHLD; Gunicorn's SIG_NAMES may name either, and the
    # base class binds handle_cld to its own handle_chld, not to this override.
    handle_cld = handle_chld

    def handle_hup(self) -> None:
        """Reload Gunicorn as usual, and restart the refresher with the new configuration."""
        super().handle_hup()
        self.refresher.restart()

    def stop(self, graceful: bool = True) -> None:
        """Ask the refresher to stop, stop the workers, then make sure the refresher is gone."""
        self.refresher.terminate()
        super().stop(graceful)
        self.refresher.stop()
