"""The small per-target ``.state`` file: JSON, replaced atomically, re-read when it changes.

The refresher rewrites it on every poll, probe and status change; workers read
it before trusting the snapshot (how fresh, from which listing, by whom). Any
malformed content is "unreadable", which callers treat like no index at all.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


class StateUnreadable(Exception):
    """The state file is missing or malformed: treat the index as unavailable."""


@dataclass(frozen=True)
class TargetState:
    """What the refresher publishes about one target besides the snapshot itself."""

    generation: int  # bumped on every write of this file
    snapshot_generation: int  # the snapshot this state describes (0: none yet)
    listed_from: float | None  # monotonic clock when the newest complete listing started
    full_from: float | None  # ... and the newest full listing
    includes_soft_deleted: bool
    refresher_pid: int
    failures: int
    last_error: str | None
    size: int
    #: The changes-since of the newest full listing (the epoch: soft-deleted included).
    full_since: str | None = None
    #: Why the listings may lack servers (a cell down), None if nothing says so.
    incomplete: str | None = None
    #: The absence rule in force (visibility.Rule value), why, and when (monotonic; -1: never).
    rule: str = "none"
    rule_reason: str = "all-project visibility not established yet"
    rule_checked_at: float = -1.0
    #: The token's project and roles (comma-separated, sorted) the rule was established with.
    rule_project: str | None = None
    rule_roles: str | None = None
    #: Our wall clock when the newest listing began, and Nova's clock minus ours: where
    #: a successor's first changes-since starts (it adopts this index, see publish.py).
    listed_wall: float | None = None
    nova_offset: float | None = None


_TYPES: dict[str, tuple[type, ...]] = {
    "generation": (int,),
    "snapshot_generation": (int,),
    "listed_from": (float, int, type(None)),
    "full_from": (float, int, type(None)),
    "includes_soft_deleted": (bool,),
    "refresher_pid": (int,),
    "failures": (int,),
    "last_error": (str, type(None)),
    "size": (int,),
    "full_since": (str, type(None)),
    "incomplete": (str, type(None)),
    "rule": (str,),
    "rule_reason": (str,),
    "rule_checked_at": (float, int),
    "rule_project": (str, type(None)),
    "rule_roles": (str, type(None)),
    "listed_wall": (float, int, type(None)),
    "nova_offset": (float, int, type(None)),
}


def write_state(path: Path, state: TargetState) -> None:
    """Replace the state file atomically (write a temporary file, then rename)."""
    data = json.dumps(asdict(state), sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.write(fd, data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def parse_state(raw: bytes) -> TargetState:
    """Return the state in `raw`; raise StateUnreadable if any field is missing or mistyped."""
    try:
        data = json.loads(raw)
    except ValueError as ex:
        raise StateUnreadable(f"not JSON: {ex}") from ex
    if not isinstance(data, dict) or set(data) != set(_TYPES):
        raise StateUnreadable("unexpected fields")
    for name, types in _TYPES.items():
        value = data[name]
        # bool is an int in Python: accept it only where a bool is meant.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise StateUnreadable(f"{name}: unexpected {type(value).__name__}")
    return TargetState(**data)


class StateView:
    """One worker's reader of a state file, re-parsed only when the file was replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[tuple[int, int, int], TargetState] | None = None

    def read(self) -> TargetState:
        """Return the current state; raise StateUnreadable if there is none or it is malformed."""
        try:
            with open(self.path, "rb") as f:
                stat = os.fstat(f.fileno())
                signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                cached = self._cached
                if cached is not None and cached[0] == signature:
                    return cached[1]
                raw = f.read()
        except OSError as ex:
            raise StateUnreadable(f"{self.path.name}: {ex}") from ex
        state = parse_state(raw)
        self._cached = (signature, state)
        return state
