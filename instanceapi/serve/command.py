"""The command line that runs the service: Gunicorn and the refresher its master supervises.

A leaf module (imports nothing of ours), so that the CLI and the test harness
share it without importing each other.
"""

from __future__ import annotations

import sys


def gunicorn_command(*extra: str) -> list[str]:
    """Return the command that runs the service with the bundled configuration."""
    return [
        sys.executable,
        "-m",
        "instanceapi.serve",
        "-c",
        "python:instanceapi.serve.gunicorn_conf",
        *extra,
    ]
