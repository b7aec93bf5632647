"""CI runs the whole suite on every Python that pyproject.toml says is supported."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from tests.fakes import require_tool

ROOT = Path(__file__).parent.parent
CI = ROOT / ".ci" / "run"


def supported_in_ci() -> list[str]:
    found = re.search(r'^SUPPORTED="([^"]+)"$', CI.read_text(), re.M)
    assert found, "SUPPORTED=... in .ci/run"
    return found.group(1).split()


def test_ci_runs_every_version_pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: "
    named = [
        c.removeprefix(prefix)
        for c in project["classifiers"]
        if c.startswith(prefix) and re.fullmatch(r"3\.\d+", c.removeprefix(prefix))
    ]
    assert named == supported_in_ci()
    assert project["requires-python"] == f">={named[0]}"


def test_ci_script_is_shellcheck_clean():
    shellcheck = require_tool("shellcheck")
    done = subprocess.run([shellcheck, str(CI)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
