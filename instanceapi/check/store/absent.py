"""Confirmed-absent verdicts shared by every Gunicorn worker of one service (SQLite).

A Satellite sweep lands each check on any worker; with a per-worker memory
only, a repeated sweep would ask Nova again about half the absent UUIDs. One
SQLite file in the service's private runtime directory serves them all.

Safety: an entry is written only for an authoritative absence (Nova never
reuses a UUID), SQLite never shows a half-written row, and any error reading
it is a miss: one more live lookup, never a wrong 404. Entries expire after
``ttl`` seconds, and one that a fresh index contradicts is deleted at once.

NOTE: expiry uses time.monotonic(): Linux's CLOCK_MONOTONIC is one clock for
every process of the host, and the file lives in the service's runtime
directory, which does not outlive a reboot. A wall-clock step cannot make an
entry live longer.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from instanceapi.verdict import Presence, Sighting, Verdict

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS absent (
    uuid TEXT PRIMARY KEY,
    seen REAL NOT NULL,
    sightings TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS absent_seen ON absent (seen);
"""


class SharedAbsentCache:
    """A bounded table of confirmed-absent verdicts, one connection per thread."""

    def __init__(
        self,
        path: Path,
        capacity: int,
        *,
        prune_every: int = 1000,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._capacity = capacity
        self._ttl = ttl
        self._clock = clock
        self._prune_every = prune_every
        self._local = threading.local()
        self._writes = 0

    def get(self, uuid: str) -> Verdict | None:
        """Return the remembered absent verdict for `uuid`, or None (also on any error)."""
        try:
            row = (
                self._db()
                .execute(
                    "SELECT sightings FROM absent WHERE uuid = ? AND expires > ?",
                    (uuid, self._clock()),
                )
                .fetchone()
            )
            return None if row is None else _verdict(uuid, row[0])
        except (sqlite3.Error, ValueError, KeyError, TypeError) as ex:
            log.warning("shared absent cache unreadable (%s): asking OpenStack instead", ex)
            return None

    def put(self, verdict: Verdict) -> None:
        """Remember an authoritative absence; failures are logged and ignored."""
        if verdict.presence is not Presence.ABSENT or self._capacity <= 0:
            return
        sightings = json.dumps([_row(s) for s in verdict.sightings])
        try:
            db = self._db()
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO absent VALUES (?, ?, ?, ?)",
                    (verdict.uuid, time.time(), sightings, self._clock() + self._ttl),
                )
            self._writes += 1
            if self._writes % self._prune_every == 0:
                self._prune(db)
        except sqlite3.Error as ex:
            log.warning("shared absent cache not written (%s)", ex)

    def discard(self, uuid: str) -> None:
        """Forget `uuid` for every worker; failures are logged (the entry then expires)."""
        try:
            db = self._db()
            with db:
                db.execute("DELETE FROM absent WHERE uuid = ?", (uuid,))
        except sqlite3.Error as ex:
            log.warning("shared absent cache: %s not evicted (%s)", uuid, ex)

    def uuids(self) -> list[str]:
        """Return the UUIDs of the unexpired entries ([] on any error)."""
        try:
            rows = self._db().execute("SELECT uuid FROM absent WHERE expires > ?", (self._clock(),))
            return [str(row[0]) for row in rows]
        except sqlite3.Error as ex:
            log.warning("shared absent cache unreadable (%s)", ex)
            return []

    def _prune(self, db: sqlite3.Connection) -> None:
        with db:
            db.execute("DELETE FROM absent WHERE expires <= ?", (self._clock(),))
            db.execute(
                "DELETE FROM absent WHERE seen < (SELECT seen FROM absent "
                "ORDER BY seen DESC LIMIT 1 OFFSET ?)",
                (self._capacity,),
            )

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")  # a cache: losing it costs lookups only
            db.executescript(_SCHEMA)
            db.isolation_level = "DEFERRED"  # transactions through "with db:"
            self._local.db = db
        return db


def _row(sighting: Sighting) -> dict[str, object]:
    return {**sighting.as_dict(), "target": sighting.target}


def _verdict(uuid: str, text: str) -> Verdict:
    sightings = tuple(
        Sighting(
            target=str(s["target"]),
            cloud=str(s["cloud"]),
            region=s["region"],
            uuid=str(s["uuid"]),
            presence=Presence.ABSENT,
            detail=str(s["detail"]),
            status=s["status"],
            rule=s["rule"],
        )
        for s in json.loads(text)
    )
    if not sightings:
        raise ValueError("an absent verdict without sightings")
    return Verdict(uuid, Presence.ABSENT, sightings, source="absent-cache")
