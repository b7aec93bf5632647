"""Decide whether an instance exists, across every configured cloud/region.

Answer rules, in order:
1. A UUID confirmed absent everywhere before is absent (Nova never reuses one).
2. A UUID listed in a fresh index of any target is present, with no upstream call.
3. Otherwise an authoritative per-UUID lookup in every target decides; concurrent
   checks of one UUID share it.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from instanceapi.cache import BoundedCache, SingleFlight
from instanceapi.index import DELETED, EVERYTHING, UNKNOWN, ServerIndex
from instanceapi.openstack import Compute, UpstreamError
from instanceapi.uuids import byte_swapped
from instanceapi.verdict import Presence, Sighting, Verdict, combine
from instanceapi.visibility import Rule, VisibilityTracker


class TargetChecker:
    """Look a UUID up in one cloud/region, reading Nova's answers conservatively."""

    def __init__(
        self,
        target: Compute,
        *,
        visibility_interval: float = 300.0,
        resync_interval: float = 600.0,
        max_index_age: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.visibility = VisibilityTracker(target, interval=visibility_interval, clock=clock)
        self.index = ServerIndex(target, resync_interval=resync_interval, clock=clock)
        self.max_index_age = max_index_age
        self._clock = clock
        #: Why Keystone is not usable now, None when it is (kept by the refresher).
        self.identity_problem: str | None = "not checked yet"

    def check_identity(self) -> None:
        """Record whether a token can be had and Keystone answers (for readiness)."""
        try:
            self.target.identity()
            self.target.ping_identity()
        except UpstreamError as ex:
            self.identity_problem = ex.reason
        else:
            self.identity_problem = None

    def readiness(self) -> str | None:
        """Return why this target is not ready, or None; never does I/O."""
        visibility = self.visibility.peek()
        if self.identity_problem:
            return f"Keystone: {self.identity_problem}"
        if visibility.checked_at < 0 or visibility.rule is Rule.NONE:
            return f"cannot prove absence: {visibility.reason}"
        if self.index.age() is not None and not self.index_is_fresh():
            return f"index is stale ({self.index.age():.0f}s old): {self.index.last_error}"
        return None

    def index_is_fresh(self) -> bool:
        """Return True if the index refreshed successfully within `max_index_age`."""
        age = self.index.age()
        return age is not None and age <= self.max_index_age

    def refresh_index(self) -> None:
        """Refresh the index in the way the current absence rule needs (raises UpstreamError)."""
        self.index.refresh(full_since=self._full_since())

    def _full_since(self) -> str | None:
        # The listing rule must see soft-deleted servers; the default listing hides them.
        return EVERYTHING if self.visibility.current().rule is Rule.LISTING else None

    def sight(self, uuid: str) -> Sighting:
        """Return what this target says about `uuid`; never raises for upstream trouble."""
        asked_at = self._clock()
        try:
            server = self.target.show(uuid)
            if server is not None:
                return self._from_server(uuid, server)
            return self._after_404(uuid, asked_at)
        except UpstreamError as ex:
            return self._seen(uuid, Presence.UNKNOWN, ex.reason)

    def sight_in_index(self, uuid: str) -> Sighting | None:
        """Return a PRESENT sighting if a fresh index lists `uuid`, else None (no I/O)."""
        status = self.index.peek(uuid)
        if status is None or status in (DELETED, UNKNOWN) or not self.index_is_fresh():
            return None
        return self._seen(
            uuid, Presence.PRESENT, "listed in the index", status=status, rule="index"
        )

    def _after_404(self, uuid: str, asked_at: float) -> Sighting:
        visibility = self.visibility.current()
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
        if not lists_unreachable_cells(self.target.microversion()):
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
        if status is None or status == DELETED:
            what = "lists it as DELETED" if status else "does not list it"
            return self._seen(
                uuid,
                Presence.ABSENT,
                f"Nova answered 404, and the all-project listing read after the question {what}",
                status=status,
                rule="listing",
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

    def _from_server(self, uuid: str, server: dict[str, Any]) -> Sighting:
        status = server.get("status")
        if str(server.get("id", "")).lower() != uuid or not isinstance(status, str):
            return self._seen(uuid, Presence.UNKNOWN, "Nova answered 200 with an unexpected body")
        if status == DELETED or server.get("OS-EXT-STS:vm_state") == "deleted":
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
    ) -> Sighting:
        target = self.target
        return Sighting(
            target=target.name,
            cloud=target.cloud,
            region=target.region,
            uuid=uuid,
            presence=presence,
            detail=f"{target.name}: {detail}",
            status=status,
            rule=rule,
        )


def lists_unreachable_cells(microversion: str) -> bool:
    """Return True if listings at this microversion show servers of down cells (2.69+)."""
    major, _, minor = microversion.partition(".")
    return (int(major), int(minor or 0)) >= (2, 69)


def forms(canonical: str) -> list[tuple[str, str]]:
    """Return the forms of a UUID worth asking Nova about, labelled.

    The byte-swapped twin is asked about only when it is a version-4 UUID:
    Nova generates every instance id with uuid4 and clients cannot choose one,
    so no other twin can be an instance. The form as given is always asked.
    """
    found = [("as-given", canonical)]
    twin = byte_swapped(canonical)
    if twin != canonical and uuidlib.UUID(twin).version == 4:
        found.append(("byte-swapped", twin))
    return found


class Overloaded(Exception):
    """Every upstream lookup slot of this process is busy: come back later (503)."""


class Checker:
    """Answer "does this instance exist?" from every target's sightings."""

    def __init__(
        self,
        targets: Sequence[TargetChecker],
        *,
        absent_cache_size: int = 100_000,
        bulk_concurrency: int = 8,
        max_live_lookups: int = 32,
        slot_wait: float = 0.5,
    ) -> None:
        if not targets:
            raise ValueError("at least one target is needed")
        self.targets = tuple(targets)
        self.absent: BoundedCache[Verdict] = BoundedCache(absent_cache_size)
        self._flights: SingleFlight[Verdict] = SingleFlight()
        self._pool = ThreadPoolExecutor(
            max_workers=bulk_concurrency, thread_name_prefix="instanceapi-bulk"
        )
        # Bounds the live lookups of this process, so a flood of random UUIDs
        # cannot hammer Nova; the excess is refused (503), never answered 404.
        self._slots = threading.BoundedSemaphore(max_live_lookups)
        self._slot_wait = slot_wait

    def check(self, canonical: str) -> Verdict:
        """Return the verdict for a canonical UUID: present anywhere wins, absent needs all."""
        return self._answer_without_io(canonical) or self._flights.run(
            canonical, lambda: self._limited(canonical)
        )

    def check_many(self, canonicals: Sequence[str]) -> list[Verdict]:
        """Return verdicts in order; live lookups run concurrently in a bounded pool."""
        quick = [self._answer_without_io(u) for u in canonicals]
        pending = {
            # Each task runs in a copy of this request's context (its request id).
            i: self._pool.submit(contextvars.copy_context().run, self._check_or_overloaded, u)
            for i, (u, v) in enumerate(zip(canonicals, quick, strict=True))
            if v is None
        }
        return [v if v is not None else pending[i].result() for i, v in enumerate(quick)]

    def _check_or_overloaded(self, canonical: str) -> Verdict:
        try:
            return self.check(canonical)
        except Overloaded:
            return Verdict(canonical, Presence.UNKNOWN, (), source="overloaded")

    def index_ages(self) -> dict[str, float | None]:
        """Return each target's index age in seconds (None: never refreshed)."""
        return {t.target.name: t.index.age() for t in self.targets}

    def _answer_without_io(self, canonical: str) -> Verdict | None:
        cached = self.absent.get(canonical)
        if cached is not None:
            return Verdict(canonical, Presence.ABSENT, cached.sightings, source="absent-cache")
        for target in self.targets:
            for label, form in (("as-given", canonical), ("byte-swapped", byte_swapped(canonical))):
                sighting = target.sight_in_index(form)
                if sighting is not None:
                    return Verdict(
                        canonical, Presence.PRESENT, (sighting,), matched=label, source="index"
                    )
        return None

    def _limited(self, canonical: str) -> Verdict:
        if not self._slots.acquire(timeout=self._slot_wait):
            raise Overloaded("every upstream lookup slot is busy; retry later")
        try:
            return self._live(canonical)
        finally:
            self._slots.release()

    def _live(self, canonical: str) -> Verdict:
        sightings: list[Sighting] = []
        for target in self.targets:
            for label, form in forms(canonical):
                sighting = target.sight(form)
                sightings.append(sighting)
                if sighting.presence is Presence.PRESENT:
                    return Verdict(canonical, Presence.PRESENT, tuple(sightings), matched=label)
        verdict = Verdict(canonical, combine(sightings), tuple(sightings))
        if verdict.presence is Presence.ABSENT:
            self.absent.put(canonical, verdict)
        return verdict
