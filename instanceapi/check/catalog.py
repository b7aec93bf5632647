"""Regions of a cloud that the configuration does not name: no absence while one exists.

A clouds.yaml often names one region (``region_name``), or none, while the
cloud's Keystone catalog has compute endpoints in several. An instance in a
region nobody checks would be answered absent. So each target compares the
compute regions of its catalog with the regions configured for its cloud,
minus those excluded on purpose (``INSTANCEAPI_EXCLUDE_REGIONS``): while one is
left over, every would-be 404 of that cloud is doubt (500) naming it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from instanceapi.config import RegionSpec
from instanceapi.openstack import Compute, UpstreamError

log = logging.getLogger(__name__)
RETRY_AFTER_FAILURE = 30.0


@dataclass(frozen=True)
class RegionCoverage:
    """The compute regions configured for one cloud, and those excluded on purpose."""

    cloud: str
    #: Regions of this cloud's targets; None for a target without a region.
    configured: frozenset[str | None]
    excluded: frozenset[str] = frozenset()

    def uncovered(self, catalog: frozenset[str]) -> list[str]:
        """Return the catalog's compute regions that no target checks and none excludes.

        A target without a region gets whichever compute endpoint keystoneauth
        picks: it covers a catalog of exactly one compute region, no more.
        """
        covered = {r for r in self.configured if r}
        if None in self.configured and len(catalog) == 1:
            covered |= catalog
        return sorted(catalog - covered - self.excluded)

    def problem(self, catalog: frozenset[str]) -> str | None:
        """Return why absence cannot be proven in this cloud (and the fix), or None."""
        missing = self.uncovered(catalog)
        if not missing:
            return None
        names = ", ".join(r or "(no region)" for r in missing)
        if None in self.configured and len(catalog) > 1:
            return (
                f"cloud {self.cloud} is configured without a region, but its catalog has "
                f"compute regions {names}, and such a target checks only the one "
                "keystoneauth picks: name each region to check (clouds.yaml 'regions:', "
                "or INSTANCEAPI_CLOUDS=cloud/Region,...)"
            )
        excluded = ",".join(f"{self.cloud}/{r}" for r in missing)
        return (
            f"the catalog of cloud {self.cloud} has compute region(s) {names} that no "
            "configured target checks: name them (clouds.yaml 'regions:', or "
            "INSTANCEAPI_CLOUDS), or, if no instance there registers to this Satellite, "
            f"set INSTANCEAPI_EXCLUDE_REGIONS={excluded}"
        )

    def excluded_names(self) -> list[str]:
        """Return the excluded regions as ``cloud/Region``."""
        return [f"{self.cloud}/{r}" for r in sorted(self.excluded)]


def coverages(
    novas: Iterable[Compute], excluded: Iterable[RegionSpec]
) -> dict[str, RegionCoverage]:
    """Return each cloud's coverage, from its regions' clients and the excluded regions."""
    novas, excluded = list(novas), list(excluded)
    return {
        cloud: RegionCoverage(
            cloud,
            frozenset(n.region or None for n in novas if n.cloud == cloud),
            frozenset(str(e.region) for e in excluded if e.cloud == cloud and e.region),
        )
        for cloud in {n.cloud for n in novas}
    }


class RegionWatch:
    """Keep one region's view of its cloud's catalog: uncovered regions, or None."""

    def __init__(
        self,
        nova: Compute,
        coverage: RegionCoverage,
        *,
        interval: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: This region's Nova (and Keystone) client.
        self.nova = nova
        self.coverage = coverage
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._fresh: frozenset[str] = frozenset()
        self._next_read = 0.0
        #: Why absence cannot be proven in this cloud, None when it can (last seen).
        self.problem: str | None = "the service catalog was not read yet"

    def refresh(self) -> None:
        """Re-read the catalog from Keystone when due (background; never raises)."""
        with self._lock:
            now = self._clock()
            if now < self._next_read:
                return
            try:
                self._fresh = self.nova.compute_regions(fresh=True)
            except UpstreamError as ex:
                self._next_read = now + min(RETRY_AFTER_FAILURE, self._interval)
                log.warning("%s: service catalog not read: %s", self.nova.name, ex.reason)
                return
            self._next_read = now + self._interval
        self._judge(self._fresh)

    def current(self) -> str | None:
        """Return the problem as of the current token's catalog and the last fresh read.

        No I/O unless the token must be renewed; a catalog that cannot be read is doubt.
        """
        try:
            regions = self.nova.compute_regions()
        except UpstreamError as ex:
            return f"the service catalog cannot be read: {ex.reason}"
        return self._judge(regions | self._fresh)

    def _judge(self, regions: frozenset[str]) -> str | None:
        problem = self.coverage.problem(regions)
        if problem != self.problem and problem is not None:
            log.error("%s: %s", self.nova.name, problem)
        self.problem = problem
        return problem
