"""Decide whether an instance exists, across every configured cloud/region.

Answer rules, in order:
1. A UUID listed in a fresh index of any target is present, with no upstream call
   (and an absence cached for it is a conflict: evicted, logged, counted).
2. A UUID confirmed absent everywhere within the last `absent_ttl` seconds is
   absent (Nova never reuses one), unless the client demands fresh evidence.
3. Otherwise an authoritative per-UUID lookup in every target decides; concurrent
   checks of one UUID share it.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence

from instanceapi.check.budget import Overloaded, UpstreamBudget
from instanceapi.check.fairpool import FairPool
from instanceapi.check.memo import BoundedCache, SingleFlight
from instanceapi.check.region import RegionChecker, lists_unreachable_cells
from instanceapi.check.store.absent import SharedAbsentCache
from instanceapi.uuids import byte_swapped
from instanceapi.verdict import Presence, Sighting, Verdict, combine, settle_omissions

log = logging.getLogger(__name__)

__all__ = ["Checker", "Overloaded", "RegionChecker", "forms", "lists_unreachable_cells"]


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


class Checker:
    """Answer "does this instance exist?" from every target's sightings."""

    def __init__(
        self,
        regions: Sequence[RegionChecker],
        *,
        absent_cache_size: int = 100_000,
        bulk_concurrency: int = 8,
        max_live_lookups: int = 12,
        slot_wait: float = 0.5,
        budget: UpstreamBudget | None = None,
        bulk_max_live: int = 50,
        shared: SharedAbsentCache | None = None,
        absent_ttl: float = 3600.0,
        on_conflict: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not regions:
            raise ValueError("at least one target is needed")
        self.regions = tuple(regions)
        #: Absent verdicts with the monotonic time they expire at.
        self.absent: BoundedCache[tuple[float, Verdict]] = BoundedCache(absent_cache_size)
        self._absent_ttl = absent_ttl
        self._on_conflict = on_conflict
        self._clock = clock
        self._flights: SingleFlight[Verdict] = SingleFlight()
        # Bulk lookups of concurrent requests are served in turn, not first come first served.
        self._pool = FairPool(bulk_concurrency, name="instanceapi-bulk")
        # Bounds the live lookups of this process, in number and in rate, so a
        # flood of random UUIDs cannot hammer Nova; the excess is refused (503),
        # never answered 404.
        self._budget = budget or UpstreamBudget(concurrency=max_live_lookups, slot_wait=slot_wait)
        self._bulk_max_live = bulk_max_live
        #: Absences confirmed by any worker of this service (None: this process only).
        self.shared = shared

    def check(self, canonical: str, *, fresh: bool = False) -> Verdict:
        """Return the verdict for a canonical UUID: present anywhere wins, absent needs all.

        With `fresh` (the client sent ``Cache-Control: no-cache``), cached
        absences are ignored: an absence is a new observation.
        """
        return (
            self._answer_without_io(canonical, fresh=fresh)
            or (None if fresh else self._shared_absent(canonical))
            or self._flights.run(canonical, lambda: self._limited(canonical))
        )

    def _shared_absent(self, canonical: str) -> Verdict | None:
        """Return an absence another worker confirmed, keeping a local copy."""
        if not self._regions_covered():
            return None
        verdict = self.shared.get(canonical) if self.shared else None
        if verdict is not None:
            self._remember(canonical, verdict, share=False)
        return verdict

    def check_many(self, canonicals: Sequence[str], *, fresh: bool = False) -> list[Verdict]:
        """Return verdicts in order; live lookups run concurrently in a bounded pool.

        At most `bulk_max_live` distinct UUIDs of one request are looked up live
        (those not answered from the index or a confirmed absence); the others
        are answered "overloaded" (503) without an upstream call. With `fresh`,
        cached absences are not used (``Cache-Control: no-cache``).
        """
        known = {
            u: self._answer_without_io(u, fresh=fresh)
            or (None if fresh else self._shared_absent(u))
            for u in canonicals
        }
        live = [u for u, v in known.items() if v is None]
        allowed, refused = live[: self._bulk_max_live], live[self._bulk_max_live :]
        # Each task runs in a copy of this request's context (its request id).
        tasks = [(contextvars.copy_context(), u, fresh) for u in allowed]
        known.update(zip(allowed, self._pool.map(self._check_in, tasks), strict=True))
        for canonical in refused:
            known[canonical] = overloaded(canonical, "this request's live lookups are used up")
        return [known[u] or overloaded(u) for u in canonicals]

    def _check_in(self, task: tuple[contextvars.Context, str, bool]) -> Verdict:
        context, canonical, fresh = task
        try:
            return context.run(self.check, canonical, fresh=fresh)
        except Overloaded as ex:
            return overloaded(canonical, str(ex))

    def index_ages(self) -> dict[str, float | None]:
        """Return each region's index age in seconds (None: never refreshed)."""
        return {r.nova.name: r.index.age() for r in self.regions}

    def _regions_covered(self) -> bool:
        """Return False while a cloud's catalog has a region nobody checks (as last seen)."""
        return not any(r.catalog and r.catalog.problem for r in self.regions)

    def _answer_without_io(self, canonical: str, *, fresh: bool = False) -> Verdict | None:
        found = self._in_index(canonical, "as-given")
        found = found or self._in_index(byte_swapped(canonical), "byte-swapped", canonical)
        cached = self._cached_absence(canonical)
        if found is not None:
            if cached is not None:
                self._conflict(canonical, found)
            return found
        if cached is None or fresh or not self._regions_covered():
            return None
        return Verdict(canonical, Presence.ABSENT, cached.sightings, source="absent-cache")

    def _cached_absence(self, canonical: str) -> Verdict | None:
        entry = self.absent.get(canonical)
        if entry is None:
            return None
        expires, verdict = entry
        # A shared entry evicted by another worker (a conflict) or expired ends ours too.
        if self._clock() < expires and (self.shared is None or self.shared.get(canonical)):
            return verdict
        self.absent.discard(canonical)
        return None

    def _remember(self, canonical: str, verdict: Verdict, *, share: bool = True) -> None:
        self.absent.put(canonical, (self._clock() + self._absent_ttl, verdict))
        if share and self.shared:
            self.shared.put(verdict)

    def _conflict(self, canonical: str, found: Verdict) -> None:
        """A fresh index lists a UUID cached as absent: the index wins, everywhere."""
        self.absent.discard(canonical)
        if self.shared:
            self.shared.discard(canonical)
        self._on_conflict()
        log.error(
            "absence conflict: %s was cached as absent, but a fresh index lists it (%s); "
            "the cached absence is evicted (a bug or an upstream anomaly)",
            canonical,
            found.sentence(),
        )

    def reconcile(self) -> None:
        """Evict every cached absence (this worker's and the shared ones) a fresh index lists.

        Called after each index refresh, so that a worker whose own index is not
        fresh does not keep serving an absence another index contradicts.
        """
        cached = set(self.absent.keys())
        if self.shared:
            cached.update(self.shared.uuids())
        fresh = [r.index for r in self.regions if r.index_is_fresh()]
        if not cached or not fresh:
            return
        # Only a version-4 twin can be an instance (Nova makes uuid4s).
        twins = {byte_swapped(u): u for u in cached if u[16:17] == "4"}
        listed: set[str] = set()
        for index in fresh:
            listed |= index.listed_among(cached)
            listed |= {twins[t] for t in index.listed_among(set(twins))}
        for canonical in listed:
            found = self._in_index(canonical, "as-given") or self._in_index(
                byte_swapped(canonical), "byte-swapped", canonical
            )
            if found is not None:
                self._conflict(canonical, found)

    def _in_index(self, form: str, label: str, canonical: str | None = None) -> Verdict | None:
        for region in self.regions:
            sighting = region.sight_in_index(form)
            if sighting is not None:
                return Verdict(
                    canonical or form, Presence.PRESENT, (sighting,), matched=label, source="index"
                )
        return None

    def _limited(self, canonical: str) -> Verdict:
        with self._budget.slot():
            return self._live(canonical)

    def _live(self, canonical: str) -> Verdict:
        """Ask every target about the UUID as given, then about the twin where it can matter.

        The twin is not asked in a target whose lookup of the form as given
        failed (Keystone refusing, Nova down): the verdict cannot be a 404
        anyway, and asking again would double the failed calls.
        """
        sightings: list[Sighting] = []
        regions: Sequence[RegionChecker] = self.regions
        for label, form in forms(canonical):
            answered: list[RegionChecker] = []
            for region in regions:
                self._budget.spend()
                sighting = region.sight(form)
                sightings.append(sighting)
                if sighting.presence is Presence.PRESENT:
                    return Verdict(canonical, Presence.PRESENT, tuple(sightings), matched=label)
                if not sighting.failed:
                    answered.append(region)
            regions = answered
        sightings = settle_omissions(sightings)
        verdict = Verdict(canonical, combine(sightings), tuple(sightings))
        if verdict.presence is Presence.ABSENT:
            self._remember(canonical, verdict)
        return verdict


def overloaded(canonical: str, reason: str = "the service is overloaded") -> Verdict:
    """Return the verdict of a check refused for lack of upstream budget (503)."""
    return Verdict(canonical, Presence.UNKNOWN, (), source="overloaded", reason=reason)
