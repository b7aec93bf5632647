"""Decide whether an instance exists, across every configured cloud/region."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any

from instanceapi.mirror import ServerMirror
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.visibility = VisibilityTracker(target, interval=visibility_interval, clock=clock)
        self.mirror = ServerMirror(target, clock=clock)
        self._clock = clock

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

    def _after_404(self, uuid: str, asked_at: float) -> Sighting:
        visibility = self.visibility.current()
        if visibility.rule is Rule.BY_ID:
            return self._seen(
                uuid,
                Presence.ABSENT,
                "Nova answered 404 to GET /servers/{id}, "
                f"and these credentials see every project ({visibility.reason})",
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
        return self._from_listing(uuid, self.mirror.status_as_of(uuid, asked_at))

    def _from_listing(self, uuid: str, status: str | None) -> Sighting:
        if status is None or status == "DELETED":
            what = "lists it as DELETED" if status else "does not list it"
            return self._seen(
                uuid,
                Presence.ABSENT,
                f"Nova answered 404, and the all-project listing read after the question {what}",
                status=status,
                rule="listing",
            )
        if status == "UNKNOWN":
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
        if status == "DELETED" or server.get("OS-EXT-STS:vm_state") == "deleted":
            return self._seen(
                uuid,
                Presence.ABSENT,
                "Nova reports the server DELETED",
                status="DELETED",
                rule="reported-deleted",
            )
        if status == "UNKNOWN":
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


class Checker:
    """Answer "does this instance exist?" from every target's sightings."""

    def __init__(self, targets: Sequence[TargetChecker]) -> None:
        if not targets:
            raise ValueError("at least one target is needed")
        self.targets = tuple(targets)

    def check(self, canonical: str) -> Verdict:
        """Return the verdict for a canonical UUID: present anywhere wins, absent needs all."""
        sightings: list[Sighting] = []
        for target in self.targets:
            for label, form in forms(canonical):
                sighting = target.sight(form)
                sightings.append(sighting)
                if sighting.presence is Presence.PRESENT:
                    return Verdict(canonical, Presence.PRESENT, tuple(sightings), matched=label)
        return Verdict(canonical, combine(sightings), tuple(sightings))
