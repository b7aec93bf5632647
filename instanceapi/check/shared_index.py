"""A worker's view of the index the refresher publishes: read from the shared store, never listed.

Every Gunicorn worker reads the same memory-mapped snapshot and state files
(instanceapi/check/store), so a new or restarted worker answers from the index
at once and costs Nova nothing. While the refresher is not running, the index
counts as stale: checks fall back to live lookups, and the listing rule, which
needs a listing read after the question, answers with doubt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from instanceapi.check.gate import GateError, ask
from instanceapi.check.index import DELETED, UNKNOWN
from instanceapi.check.store.layout import StoreLayout
from instanceapi.check.store.reader import IndexView
from instanceapi.check.store.snapshot import SnapshotUnreadable
from instanceapi.check.store.state import StateUnreadable, StateView, TargetState
from instanceapi.check.visibility import Rule, Visibility, VisibilityTracker
from instanceapi.openstack import Identity, UpstreamError

#: How long a worker trusts its last look at the state file and at the refresher's lock.
STATE_EVERY = 0.1
LIVENESS_EVERY = 0.25
#: How long a worker waits for a refresher (starting, or restarting) before it probes
#: the absence rule by itself.
FALLBACK_AFTER = 30.0
NOT_RUNNING = "the refresher is not running: checks fall back to live lookups"


class SharedIndex:
    """The published index of one region, as a worker reads it (same reading API as ServerIndex)."""

    def __init__(
        self,
        name: str,
        layout: StoreLayout,
        fingerprint: str,
        *,
        gate_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._layout = layout
        self._key = fingerprint
        self._gate = layout.directory / "gate.sock"
        self._gate_timeout = gate_timeout
        self._clock = clock
        self._view = IndexView(layout.snapshot(fingerprint))
        self._states = StateView(layout.state(fingerprint))
        self._state: tuple[float, TargetState | None] = (-1e18, None)
        self._running: tuple[float, bool] = (-1e18, False)
        self._down_since: float | None = None

    # -- what the refresher published ----------------------------------------------

    def state(self, *, cached: bool = True) -> TargetState | None:
        """Return the published state (None if there is none, or it is unreadable)."""
        now = self._clock()
        read_at, state = self._state
        if cached and now - read_at < STATE_EVERY:
            return state
        try:
            state = self._states.read()
        except StateUnreadable:
            state = None
        self._state = (now, state)
        return state

    @property
    def down(self) -> str | None:
        """Return why no refresher keeps this index fresh, None while one does."""
        now = self._clock()
        checked_at, running = self._running
        if now - checked_at >= LIVENESS_EVERY:
            running = self._layout.writer_running()
            self._running = (now, running)
            if running:
                self._down_since = None
            elif self._down_since is None:
                self._down_since = now
        return None if running else NOT_RUNNING

    def down_for(self) -> float:
        """Return for how long no refresher has been seen running (0 while one runs)."""
        if self.down is None or self._down_since is None:
            return 0.0
        return self._clock() - self._down_since

    def published_rule(self) -> Visibility | None:
        """Return the absence rule the refresher established, None if it has none yet."""
        state = self.state()
        if state is None or state.rule_checked_at < 0:
            return None
        identity = (
            Identity(
                state.rule_project, frozenset(filter(None, (state.rule_roles or "").split(",")))
            )
            if state.rule_project is not None
            else None
        )
        return Visibility(Rule(state.rule), state.rule_reason, state.rule_checked_at, identity)

    # -- ServerIndex's reading API -------------------------------------------------------

    def peek(self, uuid: str) -> str | None:
        """Return the server's listed status, None if not listed or no snapshot can be read."""
        try:
            return self._view.lookup(uuid)
        except SnapshotUnreadable:
            return None

    def listed_among(self, uuids: set[str]) -> set[str]:
        """Return those of `uuids` the snapshot lists as existing (not DELETED/UNKNOWN)."""
        return {u for u in uuids if self.peek(u) not in (None, DELETED, UNKNOWN)}

    def deleted_at(self, uuid: str) -> float | None:
        """Return (wall clock) when a listing reported this server DELETED, if one did."""
        try:
            seen = self._view.deleted_at(uuid)
        except SnapshotUnreadable:
            return None
        return None if seen is None else time.time() - (self._clock() - seen)

    @property
    def incomplete(self) -> str | None:
        """Return why the listings may lack servers (a cell down), None if nothing says so."""
        state = self.state()
        return None if state is None else state.incomplete

    @property
    def failures(self) -> int:
        state = self.state()
        return 0 if state is None else state.failures

    @property
    def last_error(self) -> str | None:
        state = self.state()
        return self.down or (None if state is None else state.last_error)

    def age(self) -> float | None:
        """Return seconds since the newest published listing began (None: none, or no refresher)."""
        state = self.state()
        if state is None or state.listed_from is None or self.down:
            return None
        return max(0.0, self._clock() - state.listed_from)

    def __len__(self) -> int:
        state = self.state()
        return 0 if state is None else state.size

    def refresh(self, *, full_since: str | None, check_cells: bool = False) -> None:
        """Re-read what the refresher published; raise UpstreamError if it cannot be trusted now."""
        if self.down:
            raise UpstreamError(self.name, NOT_RUNNING)
        state = self.state(cached=False)
        if state is None:
            raise UpstreamError(self.name, "the refresher has not published an index yet")
        if state.failures:
            raise UpstreamError(self.name, f"the refresher's listings fail: {state.last_error}")

    def status_as_of(self, uuid: str, asked_at: float, *, full_since: str | None) -> str | None:
        """Return the status from a listing that started after `asked_at` (raises UpstreamError).

        The refresher is asked for such a listing only when none is published
        yet; either way the answer is read from the published files, after
        checking there that the listing really started after the question.
        """
        if self._listed_after(asked_at, full_since) is None:
            try:
                ask(self._gate, self._key, asked_at, full_since, self._gate_timeout)
            except GateError as ex:
                raise UpstreamError(self.name, f"no listing read after the question: {ex}") from ex
        state = self._listed_after(asked_at, full_since)
        if state is None:
            raise UpstreamError(self.name, "no listing read after the question was published")
        try:
            if self._view.header().generation < state.snapshot_generation:
                raise UpstreamError(self.name, "the published snapshot is older than its state")
            return self._view.lookup(uuid)
        except SnapshotUnreadable as ex:
            raise UpstreamError(self.name, f"the published index is unreadable: {ex}") from ex

    def _listed_after(self, asked_at: float, full_since: str | None) -> TargetState | None:
        state = self.state(cached=False)
        if (
            state is None
            or state.listed_from is None
            or state.listed_from < asked_at
            or state.full_since != full_since
        ):
            return None
        return state


NOT_ESTABLISHED = Visibility(Rule.NONE, "the refresher has not established the rule yet", -1.0)


class SharedVisibility:
    """The absence rule as the refresher established it; a worker probes only as a fallback.

    While the refresher runs, its rule is the rule (a worker never probes, so
    Nova sees one probe per host). The worker probes by itself, as before the
    refresher existed, only while no refresher runs or when its own token's
    project or roles differ from those the rule was established with.
    """

    def __init__(
        self,
        index: SharedIndex,
        fallback: VisibilityTracker,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._index = index
        self._fallback = fallback
        self._interval = interval
        self._clock = clock

    def peek(self) -> Visibility:
        """Return the rule in force without probing."""
        published = self._published()
        if published is not None or not self._on_our_own():
            return published or NOT_ESTABLISHED
        return self._fallback.peek()

    def current(self, identity: Identity | None = None) -> Visibility:
        """Return the rule in force; probe locally only when no refresher's rule applies."""
        published = self._published()
        if published is not None and (identity is None or published.identity in (None, identity)):
            return published
        if published is None and not self._on_our_own():
            return NOT_ESTABLISHED
        # Our token's project or roles differ from the refresher's, or no refresher runs.
        return self._fallback.current(identity)

    def _published(self) -> Visibility | None:
        """Return the refresher's rule if it is as recent as our own probes would be."""
        published = self._index.published_rule()
        if published is None:
            return None
        if self._index.down and self._clock() - published.checked_at > self._interval:
            return None
        return published

    def _on_our_own(self) -> bool:
        return self._index.down_for() > FALLBACK_AFTER


def layout_for(runtime_dir: str, fingerprints: list[str]) -> StoreLayout:
    """Return the store of this configuration under the runtime directory."""
    return StoreLayout.for_targets(Path(runtime_dir), fingerprints)
