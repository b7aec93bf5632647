"""The refresher's index of one region: listings go to the shared store, not into memory.

The decisions (full or incremental, changes-since windows, Nova's clock, down
cells) are ServerIndex's; only where a listing goes differs. A full listing is
collected as 17 bytes per server and published as a new snapshot; a
changes-since listing is published as the snapshot plus its changes. No Python
object is kept per server, so the refresher's memory does not grow with the
cloud beyond the listing being collected.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from instanceapi.check.index import (
    EVERYTHING,
    IndexState,
    ServerIndex,
    iso,
    poll_since,
    window_start,
)
from instanceapi.check.refresher.walk import SeenIds
from instanceapi.check.store.reader import IndexView
from instanceapi.check.store.snapshot import (
    INCLUDES_SOFT_DELETED,
    Header,
    Snapshot,
    SnapshotUnreadable,
    key_of,
)
from instanceapi.check.store.state import StateUnreadable, StateView, TargetState, write_state
from instanceapi.check.store.writer import Listing, publish_changes, publish_listing
from instanceapi.openstack import Compute, UpstreamError

log = logging.getLogger(__name__)

#: What the region checker adds to each published state: the absence rule in force.
RuleFields = Callable[[], dict[str, object]]


class ResyncStopped(Exception):
    """The paced resync was asked to stop (the refresher is ending)."""


class PublishingIndex(ServerIndex):
    """A ServerIndex whose table is the published snapshot of one region."""

    def __init__(
        self,
        nova: Compute,
        *,
        snapshot: Path,
        state: Path,
        rule_fields: RuleFields = dict,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        # The resync is the paced walk's job (resync()), never a poll's: infinite interval.
        super().__init__(nova, resync_interval=float("inf"), clock=clock, wall=wall)
        self.snapshot_path = snapshot
        self._view = IndexView(snapshot)
        self.state_path = state
        self.rule_fields = rule_fields
        self._count = 0
        self._generation = 0
        self._snapshot_generation = 0

    def __len__(self) -> int:
        return self._count

    def peek(self, uuid: str) -> str | None:  # the refresher answers no check
        raise NotImplementedError("the refresher publishes; workers read the snapshot")

    def adopt(self) -> bool:
        """Continue from the index a predecessor published; False if there is none to trust.

        A restarted or reloaded refresher (same configuration, same boot: the
        master empties the store when it starts) then polls changes-since from
        where its predecessor stopped instead of listing the whole cloud again.
        The state is written after its snapshot, so the snapshot is at least as
        new as the state says; the first poll re-reads from the state's listing.
        """
        try:
            published = StateView(self.state_path).read()
            header = self._view.header()
        except (StateUnreadable, SnapshotUnreadable):
            return False
        if (
            published.listed_from is None
            or published.full_from is None
            or published.listed_wall is None
            or header.generation < published.snapshot_generation
        ):
            return False
        with self._lock:
            self._state = IndexState(
                {},
                {},
                synced_from=published.listed_from,
                full_from=published.full_from,
                full_since=published.full_since,
                nova_offset=published.nova_offset,
                incomplete=published.incomplete,
                synced_wall=published.listed_wall,
            )
            self._generation = published.generation
            self._published(header)
        return True

    def listed_after(self, asked_at: float, *, full_since: str | None) -> None:
        """Make sure a listing that started after `asked_at` is published (raises UpstreamError).

        Concurrent callers share one poll: whoever waited for the lock while
        another polled finds the published listing already newer than its question.
        """
        with self._lock:
            state = self._state
            if (
                state.synced_from is None
                or state.synced_from < asked_at
                or state.full_since != full_since
            ):
                self._refresh_locked(full_since)

    def publish_state(self) -> None:
        """Write the state file now (after a probe changed the rule, for instance)."""
        with self._lock:
            self._write_state()

    # -- listings ------------------------------------------------------------------

    def _refresh_locked(self, full_since: str | None, *, check_cells: bool = False) -> None:
        try:
            super()._refresh_locked(full_since, check_cells=check_cells)
        finally:
            self._write_state()

    def _read(
        self,
        state: IndexState,
        began: tuple[float, float],
        full: bool,
        full_since: str | None,
    ) -> IndexState:
        started, started_wall = began
        if full:
            listing = Listing()
            listing.add(self._records(full_since), seen_at=started)
            self._published(self._publish(listing, started, full_since))
        else:
            listed = self._records(poll_since(state, started_wall))
            changes = self._changed(dict(listed))
            if not changes:  # only the state says that this listing was read
                return self._next_state(state, began, full, full_since)
            try:
                header = publish_changes(self.snapshot_path, changes, listed_from=started)
            except SnapshotUnreadable as ex:
                # Lost or damaged: list in full next time, and say so now.
                self._state = dataclasses.replace(self._state, full_from=None)
                raise UpstreamError(
                    self.nova.name, f"snapshot unreadable ({ex}): relisting"
                ) from ex
            self._published(header)
        return self._next_state(state, began, full, full_since)

    def _next_state(
        self, state: IndexState, began: tuple[float, float], full: bool, full_since: str | None
    ) -> IndexState:
        started, started_wall = began
        return IndexState(
            {},
            {},
            synced_from=started,
            full_from=started if full else state.full_from,
            full_since=full_since if full else state.full_since,
            nova_offset=self._nova_offset(state.nova_offset),
            synced_wall=started_wall,
        )

    def resync(self, *, pause: float, stopping: threading.Event) -> bool:
        """Read the whole listing again, a page at a time with `pause` between pages.

        Polls and checks go on meanwhile; the walk keeps only a Bloom filter of
        the ids it saw (about a byte per server, see walk.py) and the records
        whose status differs from the published one. Then, under the lock, a
        changes-since listing from the walk's start is read (later records win)
        and the published index loses the rows that neither listing shows (rows
        Nova archived after reporting them DELETED). A failed page, a stop, or a
        rule changed meanwhile publishes nothing. Returns True if it completed.
        """
        with self._lock:
            before, expected = self._state, self._count
        if before.full_from is None:
            return False  # the bootstrap listing has not been read yet
        full_since = before.full_since
        started, started_wall = self._clock(), self._wall()
        seen = SeenIds(expected)
        walked: dict[str, str] = {}  # only what differs from the published index
        batch: dict[str, str] = {}
        for server_id, status in self._paced(self._records(full_since), pause, stopping):
            seen.add(key_of(server_id))
            batch[server_id] = status
            if len(batch) >= 1000:
                walked.update(self._changed(batch))
                batch = {}
        walked.update(self._changed(batch))
        with self._lock:
            state = self._state
            if state.full_since != full_since or state.full_from is None:
                log.info("%s: resync discarded: the listing rule changed", self.nova.name)
                return False
            caught_up, caught_up_wall = self._clock(), self._wall()
            try:
                walked.update(self._records(iso(window_start(started_wall, state.nova_offset))))
                self._publish_resync(walked, seen, caught_up)
            except SnapshotUnreadable:
                self._state = dataclasses.replace(self._state, full_from=None)
                self._write_state()
                return False
            except UpstreamError:
                self._write_state()
                raise
            self._state = dataclasses.replace(
                state,
                synced_from=caught_up,
                synced_wall=caught_up_wall,
                full_from=started,
                nova_offset=self._nova_offset(state.nova_offset),
            )
            self._write_state()
        return True

    def _publish_resync(self, walked: dict[str, str], seen: SeenIds, listed_from: float) -> None:
        """Publish what the walk changed and drop what no listing showed (under the lock)."""
        listed = {key_of(server_id) for server_id in walked}
        gone = {
            key
            for key in Snapshot.open(self.snapshot_path).listed_keys()
            if key not in seen and key not in listed
        }
        changes = self._changed(walked)
        if changes or gone:
            self._published(
                publish_changes(self.snapshot_path, changes, listed_from=listed_from, removed=gone)
            )
        if gone:
            log.info("%s: resync: %d rows no listing shows any more", self.nova.name, len(gone))

    def _changed(self, listed: dict[str, str]) -> dict[str, str]:
        """Return the records whose status differs from the published one.

        A changes-since window overlaps the previous one (skew margin), so most
        polls re-read servers already published as they are: those cost no new
        snapshot. An unreadable snapshot counts everything as changed.
        """
        try:
            return {i: s for i, s in listed.items() if self._view.lookup(i) != s}
        except SnapshotUnreadable:
            return listed

    def _records(self, since: str | None) -> Iterator[tuple[str, str]]:
        for page in self.nova.list_servers(changes_since=since):
            for server in page:
                yield server.id, server.listed_status

    @staticmethod
    def _paced(
        records: Iterator[tuple[str, str]], pause: float, stopping: threading.Event
    ) -> Iterator[tuple[str, str]]:
        """Yield `records`, resting `pause` seconds after every 1,000 (about a page)."""
        for number, record in enumerate(records, 1):
            yield record
            if number % 1000 == 0 and stopping.wait(pause):
                raise ResyncStopped

    def _publish(self, listing: Listing, listed_from: float, full_since: str | None) -> Header:
        flags = INCLUDES_SOFT_DELETED if full_since == EVERYTHING else 0
        return publish_listing(self.snapshot_path, listing, listed_from=listed_from, flags=flags)

    def _published(self, header: Header) -> None:
        self._count = header.count
        self._snapshot_generation = header.generation

    def _write_state(self) -> None:
        state = self._state
        self._generation += 1
        try:
            write_state(
                self.state_path,
                TargetState(
                    generation=self._generation,
                    snapshot_generation=self._snapshot_generation,
                    listed_from=state.synced_from,
                    full_from=state.full_from,
                    includes_soft_deleted=state.full_since == EVERYTHING,
                    refresher_pid=os.getpid(),
                    failures=self.failures,
                    last_error=self.last_error,
                    size=self._count,
                    full_since=state.full_since,
                    incomplete=state.incomplete,
                    listed_wall=state.synced_wall,
                    nova_offset=state.nova_offset,
                    **self.rule_fields(),  # type: ignore[arg-type]
                ),
            )
        except OSError as ex:  # workers then see an old state: older, never wrong
            log.error("%s: state not published: %s", self.nova.name, ex)
