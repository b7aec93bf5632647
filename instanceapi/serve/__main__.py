"""``python -m instanceapi.serve [gunicorn options] [APP]``: Gunicorn plus the refresher child.

Gunicorn's command line is unchanged (``-c``, ``--bind``, an app module ...).
The child to supervise is the module named by ``IAPI_SERVE_REFRESHER``
(run as ``python -m <module>``), by default instanceapi's refresher; set
empty, this is plain Gunicorn.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

from gunicorn.app.wsgiapp import WSGIApplication

from instanceapi.serve.arbiter import SupervisingArbiter

#: Not INSTANCEAPI_*: the service's settings reject unknown INSTANCEAPI_ variables.
MODULE_ENV = "IAPI_SERVE_REFRESHER"
DEFAULT_REFRESHER = "instanceapi.check.refresher"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def refresher_argv(environ: Mapping[str, str]) -> list[str] | None:
    """Return the refresher's command line from the environment, None if none is configured."""
    module = environ.get(MODULE_ENV, DEFAULT_REFRESHER).strip()
    if not module:
        return None
    if not _DOTTED.fullmatch(module):
        raise ValueError(f"{MODULE_ENV}: not a Python module name: {module!r}")
    return [sys.executable, "-m", module]


class ServiceApplication(WSGIApplication):  # type: ignore[misc]  # gunicorn ships no types
    """Gunicorn's WSGI application whose master also supervises the refresher."""

    def __init__(self, argv: list[str] | None) -> None:
        self.refresher_argv = argv
        super().__init__("%(prog)s [OPTIONS] [APP_MODULE]", prog="instanceapi serve")

    def run(self) -> None:
        """Start the master, or do what Gunicorn does for --check-config / --print-config."""
        cfg = self.cfg
        if self.refresher_argv is None or cfg.print_config or cfg.check_config:
            super().run()
            return
        if cfg.daemon:
            sys.exit("Error: daemon mode is not supported: run in the foreground (systemd)")
        for path in filter(None, (cfg.pythonpath or "").split(",")):
            if os.path.abspath(path) not in sys.path:
                sys.path.insert(0, os.path.abspath(path))
        try:
            SupervisingArbiter(self, self.refresher_argv).run()
        except RuntimeError as ex:
            sys.exit(f"\nError: {ex}\n")


def main() -> None:
    """Run the service; an invalid refresher setting stops start-up, naming it."""
    try:
        argv = refresher_argv(os.environ)
    except ValueError as ex:
        sys.exit(f"Error: {ex}")
    ServiceApplication(argv).run()


if __name__ == "__main__":
    main()
