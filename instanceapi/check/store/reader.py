"""Workers' view of one target's snapshot: lock-free lookups, remapped when superseded.

Thread safety without a lock: a lookup reads the current `Snapshot` once into a
local and uses only that; a remap swaps one attribute. An old mapping is never
closed by hand, so a thread still reading it finishes on valid pages; it is
unmapped when the last reference goes.
"""

from __future__ import annotations

import os
from pathlib import Path

from instanceapi.check.store.snapshot import (
    STATUSES,
    Header,
    Snapshot,
    SnapshotUnreadable,
    key_of,
)

#: Opens in a row that may find an already superseded file before using it anyway
#: (it is complete and valid, only older): a busy writer cannot make a reader spin.
REOPENS = 3


class IndexView:
    """The published index of one target, as one worker reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._snapshot: Snapshot | None = None
        self._bad: tuple[int, int, int, int] | None = None  # stat of a file found unreadable

    def lookup(self, canonical: str) -> str | None:
        """Return the listed status of a canonical UUID, None if the snapshot does not list it.

        Raises SnapshotUnreadable when there is no valid snapshot: the caller must
        then answer without the index (never read that as "not listed").
        """
        snapshot = self._snapshot
        if snapshot is None or snapshot.superseded:
            snapshot = self._reopen()
        code = snapshot.code(key_of(canonical))
        if code is None:
            return None
        if code >= len(STATUSES):
            raise SnapshotUnreadable(f"{self.path.name}: unknown status code {code}")
        return STATUSES[code]

    def deleted_at(self, canonical: str) -> float | None:
        """Return when a listing first reported this UUID DELETED (monotonic), None if none did."""
        return self.current().deleted_at(key_of(canonical))

    def header(self) -> Header:
        """Return the current snapshot's header (count, generation, listed_from, flags)."""
        return self.current().header

    def current(self) -> Snapshot:
        """Return the newest valid snapshot, remapping if the one held was superseded."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.superseded:
            snapshot = self._reopen()
        return snapshot

    def _reopen(self) -> Snapshot:
        for _ in range(REOPENS):
            snapshot = self._open()
            if not snapshot.superseded:
                break
        self._snapshot = snapshot
        return snapshot

    def _open(self) -> Snapshot:
        """Map the file at the path; a file already found unreadable fails at the cost of a stat."""
        try:
            stat = os.stat(self.path)
        except OSError as ex:
            raise SnapshotUnreadable(f"{self.path.name}: {ex}") from ex
        signature = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if signature == self._bad:
            raise SnapshotUnreadable(f"{self.path.name}: unreadable (unchanged since)")
        try:
            return Snapshot.open(self.path)
        except SnapshotUnreadable:
            self._bad = signature
            raise
