"""Two-phase confirmation: remember absent hosts across runs in a small state file.

A host is due for deletion only after it was found absent in `runs` consecutive
completed runs, each counted sighting at least `interval` after the previous one.
A run that sees the host present, gets no authoritative answer, or no longer sees
the host at all drops its mark, so the count starts again from one.

The file is replaced atomically (temporary file in the same directory, fsync,
rename, fsync of the directory): a crash mid-write leaves the old or the new
file, never a mix. An unreadable file is moved aside and treated as empty, which
can only delay deletions, never hasten them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

_VERSION = 1


class StateError(Exception):
    """The state file cannot be used (for example, another run holds its lock)."""


@dataclass(frozen=True)
class Mark:
    """One host found absent: since when, when last counted, and how many times."""

    name: str
    uuid: str
    first_absent: datetime
    last_counted: datetime
    count: int


def advance(
    marks: Mapping[int, Mark],
    absent: Mapping[int, tuple[str, str]],
    now: datetime,
    interval: timedelta,
) -> dict[int, Mark]:
    """Return the marks after a completed run that found `absent` {host id: (name, uuid)}.

    Hosts not in `absent` lose their mark. A sighting sooner than `interval` after the
    last counted one keeps the mark without counting; a changed name or UUID restarts it.
    """
    result: dict[int, Mark] = {}
    for host_id, (name, uuid) in absent.items():
        old = marks.get(host_id)
        if old is None or (old.name, old.uuid) != (name, uuid):
            result[host_id] = Mark(name, uuid, now, now, 1)
        elif now - old.last_counted >= interval:
            result[host_id] = replace(old, last_counted=now, count=old.count + 1)
        else:
            result[host_id] = old
    return result


def forget(marks: Mapping[int, Mark], host_ids: set[int]) -> dict[int, Mark]:
    """Return the marks without those of `host_ids` (seen present or unanswered)."""
    return {host_id: mark for host_id, mark in marks.items() if host_id not in host_ids}


def recent(deletions: list[datetime], now: datetime, window: timedelta) -> list[datetime]:
    """Return the deletions made within `window` before `now`.

    One dated after `now` (the clock stepped back) counts too: the budget never grows
    because a clock moved.
    """
    return [when for when in deletions if when > now - window]


def due(marks: Mapping[int, Mark], runs: int) -> set[int]:
    """Return the host ids whose absence has been confirmed `runs` times."""
    return {host_id for host_id, mark in marks.items() if mark.count >= runs}


class StateFile:
    """The JSON file holding the marks, with atomic replacement and a run lock."""

    def __init__(self, path: Path) -> None:
        """Use the state file at `path` (created on first save)."""
        self.path = path
        # When each past deletion was sent: the rolling deletion budget counts these.
        self.deletions: list[datetime] = []
        self.history_lost = False  # the file was unreadable: past deletions are unknown

    def load(self, *, repair: bool = True) -> tuple[dict[int, Mark], str | None]:
        """Return the marks, and a warning when the file was unreadable.

        With `repair`, an unreadable file is moved aside (to `<name>.corrupt`) so the
        next save starts a fresh one; a dry-run passes False and changes nothing.
        """
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, None
        try:
            data = json.loads(raw)
            marks = _decode(data)
            self.deletions = [_when(t) for t in data.get("deletions", [])]
            return marks, None
        except (ValueError, TypeError, KeyError, AttributeError) as ex:
            self.history_lost = True
            if not repair:
                return {}, f"state file {self.path} unreadable ({ex}); treated as empty"
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            return {}, f"state file {self.path} unreadable ({ex}); moved to {aside}, starting over"

    def save(self, marks: Mapping[int, Mark]) -> None:
        """Replace the file with `marks`, atomically and durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        encoded = _encode(marks)
        encoded["deletions"] = [when.isoformat() for when in sorted(self.deletions)]
        data = json.dumps(encoded, indent=1, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.path.parent)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock for one run; raise StateError if another run has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as ex:
                raise StateError(f"another reap run holds {lock_path}") from ex
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(marks: Mapping[int, Mark]) -> dict[str, object]:
    hosts = {}
    for host_id, mark in marks.items():
        entry = asdict(mark)
        entry["first_absent"] = mark.first_absent.isoformat()
        entry["last_counted"] = mark.last_counted.isoformat()
        hosts[str(host_id)] = entry
    return {"version": _VERSION, "hosts": hosts}


def _decode(data: Any) -> dict[int, Mark]:
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict) or data.get("version") != _VERSION:
        raise ValueError(f"expected an object of version {_VERSION} with a 'hosts' object")
    marks: dict[int, Mark] = {}
    for key, entry in hosts.items():
        marks[int(key)] = Mark(
            name=str(entry["name"]),
            uuid=str(entry["uuid"]),
            first_absent=_when(entry["first_absent"]),
            last_counted=_when(entry["last_counted"]),
            count=int(entry["count"]),
        )
    return marks


def _when(text: Any) -> datetime:
    value = datetime.fromisoformat(str(text))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return value
