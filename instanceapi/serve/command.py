"""The command line that runs Gunicorn with the bundled configuration.

A leaf module (imports nothing of ours), so that the CLI and the test harness
share it without importing each other.
"""

from __future__ import annotations

import sys


def gunicorn_command(*extra: str) -> list[str]:
    """Return the command that runs Gunicorn with the bundled configuration."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:instanceapi.serve.gunicorn_conf",
        *extra,
    ]
