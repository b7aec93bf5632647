"""One cloud/region's answer about a UUID, read conservatively.

A 200 is presence (unless Nova says DELETED or UNKNOWN); a 404 is absence only
under the absence rule this region's credentials have earned (see visibility);
everything else is doubt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from instanceapi.check.catalog import RegionCoverage, RegionWatch
from instanceapi.check.index import (
    DELETED,
    EVERYTHING,
    UNKNOWN,
    ServerIndex,
)
from instanceapi.check.index import lists_unreachable_cells as lists_unreachable_cells
from instanceapi.check.visibility import Rule, Visibility, VisibilityTracker
from instanceapi.openstack import Compute, Identity, ServerRecord, UnexpectedBody, UpstreamError
from instanceapi.verdict import NOT_LISTED, Presence, Sighting

log = logging.getLogger(__name__)


class IndexSource(Protocol):
    """What a region checker reads its index through: in memory, or the refresher's store."""

    down: str | None
    failures: int
    last_error: str | None

    def peek(self, uuid: str) -> str | None: ...
    def listed_among(self, uuids: set[str]) -> set[str]: ...
    def deleted_at(self, uuid: str) -> float | None: ...
    @property
    def incomplete(self) -> str | None: ...
    def age(self) -> float | None: ...
    def __len__(self) -> int: ...
    def status_as_of(self, uuid: str, asked_at: float, *, full_since: str | None) -> str | None: ...
    def refresh(self, *, full_since: str | None, check_cells: bool = False) -> None: ...


class RuleSource(Protocol):
    """Where a region checker's absence rule comes from: its own probes, or the refresher's."""

    def peek(self) -> Visibility: ...
    def current(self, identity: Identity | None = None) -> Visibility: ...


#: Why a region can be not ready: the `reason` label of instanceapi_target_not_ready.
NOT_READY_REASONS = (
    "keystone",
    "region_uncovered",
    "absence_rule",
    "index_stale",
    "index_incomplete",
)


class RegionChecker:
    """Look a UUID up in one cloud/region, reading Nova's answers conservatively."""

    def __init__(
        self,
        nova: Compute,
        *,
        visibility_interval: float = 300.0,
        resync_interval: float = 600.0,
        max_index_age: float = 300.0,
        cells_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        coverage: RegionCoverage | None = None,
        index: IndexSource | None = None,
        visibility: Callable[[VisibilityTracker], RuleSource] | None = None,
    ) -> None:
        """`clock` orders events and measures ages (monotonic); `wall` only builds
        changes-since values (see ServerIndex). `index` replaces the in-memory
        index (a worker reads the refresher's); `visibility` wraps the local
        tracker (a worker follows the refresher's rule)."""
        #: This region's Nova (and Keystone) client.
        self.nova = nova
        #: The catalog's regions against the configured ones (None: not checked).
        self.catalog = (
            RegionWatch(nova, coverage, interval=visibility_interval) if coverage else None
        )
        tracker = VisibilityTracker(nova, interval=visibility_interval, clock=clock)
        self.visibility: RuleSource = visibility(tracker) if visibility else tracker
        # NOTE: "is None", not "or": an empty index is falsy (it has a length).
        self.index: IndexSource = (
            index
            if index is not None
            else ServerIndex(nova, resync_interval=resync_interval, clock=clock, wall=wall)
        )
        self.max_index_age = max_index_age
        self._clock = clock
        #: Why Keystone is not usable now, None when it is (kept by the refresher).
        self.identity_problem: str | None = "not checked yet"
        self._identity_ping_interval = visibility_interval
        self._next_identity_ping = 0.0
        #: Seconds between down-cell checks while the index is complete (0: every refresh).
        self._cells_interval = cells_interval
        self._next_cells_check = 0.0

    def check_identity(self) -> None:
        """Record whether a token can be had and Keystone answers (for readiness).

        A valid token costs nothing to check; Keystone itself is pinged once per
        visibility interval, and on every call while it is failing (so that its
        recovery shows at once), not on every refresh.
        """
        now = self._clock()
        due = self.identity_problem is not None or now >= self._next_identity_ping
        try:
            self.nova.identity()
            if due:
                self.nova.ping_identity()
                self._next_identity_ping = now + self._identity_ping_interval
        except UpstreamError as ex:
            self.identity_problem = ex.reason
        else:
            self.identity_problem = None
            if self.catalog:
                self.catalog.refresh()

    def readiness(self) -> str | None:
        """Return why this region is not ready, or None; never does I/O."""
        problem = self.not_ready()
        return problem[1] if problem else None

    def not_ready(self) -> tuple[str, str] | None:
        """Return (reason code, why) when this region is not ready, else None; no I/O.

        The code is one of `NOT_READY_REASONS` (a metric label); the text is for people.
        """
        visibility = self.visibility.peek()
        if self.identity_problem:
            return "keystone", f"Keystone: {self.identity_problem}"
        if self.catalog and self.catalog.problem:
            return "region_uncovered", f"cannot prove absence: {self.catalog.problem}"
        if visibility.checked_at < 0 or visibility.rule is Rule.NONE:
            return "absence_rule", f"cannot prove absence: {visibility.reason}"
        if self.index.down:
            return "index_stale", f"index is stale: {self.index.down}"
        if self.index.age() is not None and not self.index_is_fresh():
            age = self.index.age() or 0.0
            return "index_stale", f"index is stale ({age:.0f}s old): {self.index.last_error}"
        if self.index.incomplete:
            return "index_incomplete", f"index is incomplete: {self.index.incomplete}"
        return None

    def index_is_fresh(self) -> bool:
        """Return True if the index refreshed successfully within `max_index_age`."""
        age = self.index.age()
        return age is not None and age <= self.max_index_age

    def refresh_index(self) -> None:
        """Refresh the index in the way the current absence rule needs (raises UpstreamError).

        The down-cell check (one unfiltered page of up to 1,000 servers) runs at
        most every `cells_interval` while the index is complete, and on every
        refresh while it is not, so that a cell's return is seen at once. It
        only tells readiness: a listing's omission is never absence evidence.
        """
        now = self._clock()
        check_cells = self.index.incomplete is not None or now >= self._next_cells_check
        if check_cells:
            self._next_cells_check = now + self._cells_interval
        self.index.refresh(full_since=self._full_since(), check_cells=check_cells)

    def _full_since(self) -> str | None:
        # The listing rule must see soft-deleted servers; the default listing hides them.
        return EVERYTHING if self.visibility.current().rule is Rule.LISTING else None

    def sight(self, uuid: str) -> Sighting:
        """Return what this region says about `uuid`; never raises for upstream trouble.

        No absence, by any rule, while the cloud's catalog has a region nobody checks.
        """
        sighting = self._look(uuid)
        uncovered = (
            self.catalog.current()
            if self.catalog and sighting.presence is Presence.ABSENT
            else None
        )
        if uncovered:
            return self._seen(uuid, Presence.UNKNOWN, f"absence not provable: {uncovered}")
        return sighting

    def _look(self, uuid: str) -> Sighting:
        asked_at = self._clock()
        try:
            server = self.nova.show(uuid)
            if server is not None:
                return self._from_server(uuid, server)
            return self._after_404(uuid, asked_at)
        except UnexpectedBody:  # Nova answered, but not with this server's record
            return self._seen(uuid, Presence.UNKNOWN, "Nova answered 200 with an unexpected body")
        except UpstreamError as ex:
            return self._seen(uuid, Presence.UNKNOWN, ex.reason, failed=True)
        except Exception:  # a bug or an unforeseen answer: doubt for this region, never absence
            log.exception("%s: looking up %s failed unexpectedly", self.nova.name, uuid)
            return self._seen(uuid, Presence.UNKNOWN, "the lookup failed unexpectedly", failed=True)

    def sight_in_index(self, uuid: str) -> Sighting | None:
        """Return a PRESENT sighting if a fresh index lists `uuid`, else None (no I/O)."""
        status = self.index.peek(uuid)
        if status is None or status in (DELETED, UNKNOWN) or not self.index_is_fresh():
            return None
        return self._seen(
            uuid, Presence.PRESENT, "listed in the index", status=status, rule="index"
        )

    def _after_404(self, uuid: str, asked_at: float) -> Sighting:
        uncovered = self.catalog.current() if self.catalog else None
        if uncovered:
            return self._seen(uuid, Presence.UNKNOWN, f"Nova answered 404, but {uncovered}")
        visibility = self.visibility.current(self.nova.identity())
        if visibility.rule is Rule.BY_ID:
            return self._seen(
                uuid,
                Presence.ABSENT,
                "Nova answered 404 to GET /servers/{id}, "
                f"and these credentials see every project ({visibility.reason})"
                + self._deletion_evidence(uuid),
                rule="by-id",
            )
        if visibility.rule is Rule.NONE:
            return self._seen(
                uuid,
                Presence.UNKNOWN,
                "Nova answered 404, but the credentials "
                f"lack all-project visibility: {visibility.reason}",
            )
        if not lists_unreachable_cells(self.nova.microversion()):
            return self._seen(
                uuid,
                Presence.UNKNOWN,
                "Nova answered 404; the listing rule needs "
                "microversion 2.69 (older listings omit unreachable cells)",
            )
        status = self.index.status_as_of(uuid, asked_at, full_since=EVERYTHING)
        return self._from_listing(uuid, status)

    def _deletion_evidence(self, uuid: str) -> str:
        seen = self.index.deleted_at(uuid)
        if seen is None:
            return ""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen))
        return f"; a changes-since listing at {stamp} reported it DELETED"

    def _from_listing(self, uuid: str, status: str | None) -> Sighting:
        if status == DELETED:
            return self._seen(
                uuid,
                Presence.ABSENT,
                "Nova answered 404, and the all-project listing read after the question "
                "reports it DELETED",
                status=status,
                rule="listing",
            )
        if status is None:
            # NOTE: never absence from an omission. Every listing that pages skips
            # servers of an unreachable cell silently, and changes-since listings
            # miss a server being built for a moment (shared facts).
            return self._seen(
                uuid,
                Presence.UNKNOWN,
                "Nova answered 404 and the all-project listing does not show it, but a "
                "listing can silently leave out servers of an unreachable cell or still "
                "being built: without the admin role only a DELETED record proves absence "
                "(see the README, Least privilege)",
                rule=NOT_LISTED,
            )
        if status == UNKNOWN:
            return self._seen(
                uuid,
                Presence.UNKNOWN,
                "listed with status UNKNOWN: its cell is unreachable",
                status=status,
            )
        return self._seen(
            uuid, Presence.PRESENT, "in the all-project listing", status=status, rule="listing"
        )

    def _from_server(self, uuid: str, server: ServerRecord) -> Sighting:
        status = server.status
        if server.id != uuid or status is None:  # NovaRegion raises first; a fake might not
            return self._seen(uuid, Presence.UNKNOWN, "Nova answered 200 with an unexpected body")
        if status == DELETED or server.vm_state == "deleted":
            return self._seen(
                uuid,
                Presence.ABSENT,
                "Nova reports the server DELETED",
                status=DELETED,
                rule="reported-deleted",
            )
        if status == UNKNOWN:
            return self._seen(
                uuid,
                Presence.UNKNOWN,
                "Nova reports status UNKNOWN: the server's cell is unreachable",
                status=status,
            )
        return self._seen(
            uuid,
            Presence.PRESENT,
            "Nova answered 200 to GET /servers/{id}",
            status=status,
            rule="by-id",
        )

    def _seen(
        self,
        uuid: str,
        presence: Presence,
        detail: str,
        *,
        status: str | None = None,
        rule: str | None = None,
        failed: bool = False,
    ) -> Sighting:
        nova = self.nova
        return Sighting(
            target=nova.name,
            cloud=nova.cloud,
            region=nova.region,
            uuid=uuid,
            presence=presence,
            detail=f"{nova.name}: {detail}",
            status=status,
            rule=rule,
            failed=failed,
        )
