"""Where one configuration's store lives, and the lock that allows one writer.

``$INSTANCEAPI_RUNTIME_DIR/store-<digest of every target's fingerprint>/`` (0700)::

    lock            the refresher holds flock(LOCK_EX) on it for its whole life
    <key>.snap      a target's snapshot (key: digest of that target's fingerprint)
    <key>.state     its state file
    absent.sqlite3  confirmed absences (many writers: SQLite WAL)

Another set of targets (a reload that changed clouds.yaml) gets another
directory, so no evidence crosses configurations. A flock dies with its holder,
even on SIGKILL: no stale lock is ever left to clear.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PREFIX = "store-"


class StoreBusy(Exception):
    """Another writer (refresher) already holds this store."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StoreLayout:
    """The files of one configuration's store."""

    directory: Path

    @classmethod
    def for_targets(cls, runtime_dir: Path, fingerprints: Sequence[str]) -> StoreLayout:
        """Return the store of this set of targets (the order does not matter).

        NOTE: a reload (HUP) keeps the runtime directory while the new workers
        and refresher re-read clouds.yaml; absent from regions A and B proves
        nothing about a region C added meanwhile: another set, another store.
        """
        return cls(runtime_dir / f"{PREFIX}{_digest(chr(10).join(sorted(fingerprints)))}")

    def create(self) -> None:
        """Create the directory, private to this user."""
        self.directory.mkdir(mode=0o700, exist_ok=True)

    @property
    def lock(self) -> Path:
        """Return the lock file the writer holds."""
        return self.directory / "lock"

    @property
    def absent(self) -> Path:
        """Return the confirmed-absences database."""
        return self.directory / "absent.sqlite3"

    def snapshot(self, fingerprint: str) -> Path:
        """Return the snapshot file of one target."""
        return self.directory / f"{_digest(fingerprint)}.snap"

    def state(self, fingerprint: str) -> Path:
        """Return the state file of one target."""
        return self.directory / f"{_digest(fingerprint)}.state"

    def writer_running(self) -> bool:
        """Return True while a writer holds the lock (a shared, non-blocking try: no wait)."""
        try:
            fd = os.open(self.lock, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases a shared lock we took
        return False


class WriterLock:
    """Hold the store's lock for as long as the context lasts (the refresher's whole life)."""

    def __init__(self, layout: StoreLayout, *, wait: bool = True) -> None:
        self._layout = layout
        self._wait = wait
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        self._layout.create()
        fd = os.open(self._layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self._wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreBusy(str(self._layout.directory)) from None
        self._fd = fd
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
