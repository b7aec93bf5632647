"""What one target said about a UUID, and what all of them say together."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass

#: The rule of a sighting "Nova answered 404 and the listing does not show it":
#: doubt on its own (a listing can skip a down cell or a server being built).
NOT_LISTED = "not-listed"


class Presence(enum.Enum):
    """Whether an instance exists, as far as the evidence goes."""

    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"

    @property
    def exists(self) -> bool | None:
        """Return True/False/None, the JSON answer for this presence."""
        return {"present": True, "absent": False}.get(self.value)


@dataclass(frozen=True)
class Sighting:
    """What one cloud/region said about one form of a UUID, and why we believe it."""

    target: str
    cloud: str
    region: str | None
    uuid: str
    presence: Presence
    detail: str
    status: str | None = None
    rule: str | None = None
    #: The lookup itself failed (Keystone, Nova unreachable or erring): the target is in doubt.
    failed: bool = False

    def as_dict(self) -> dict[str, object]:
        """Return the JSON form used in response bodies."""
        return {
            "cloud": self.cloud,
            "region": self.region,
            "uuid": self.uuid,
            "exists": self.presence.exists,
            "status": self.status,
            "rule": self.rule,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Verdict:
    """The answer for one UUID across every configured target."""

    uuid: str
    presence: Presence
    sightings: tuple[Sighting, ...]
    matched: str | None = None
    source: str = "live"  # "index", "absent-cache" or "live" (asked OpenStack now)
    #: Why a check was refused ("overloaded" only).
    reason: str | None = None

    @property
    def decisive(self) -> Sighting | None:
        """Return the sighting that decided: the find, or the first failure."""
        wanted = self.presence if self.presence is not Presence.ABSENT else None
        for sighting in self.sightings:
            if wanted is not None and sighting.presence is wanted:
                return sighting
        return None

    def sentence(self) -> str:
        """Return one readable sentence for humans (text/plain answers)."""
        found = self.decisive
        if self.presence is Presence.PRESENT and found:
            form = " (byte-swapped form)" if self.matched == "byte-swapped" else ""
            return f"Instance {self.uuid} exists in {found.target}{form}: {found.status}."
        if self.presence is Presence.ABSENT:
            where = ", ".join(sorted({s.target for s in self.sightings}))
            return f"Instance {self.uuid} does not exist in any configured cloud ({where})."
        if self.source == "overloaded":
            why = self.reason or "the service is overloaded"
            return f"Instance {self.uuid} could not be checked: {why}; retry later."
        reason = found.detail if found else "no cloud could be asked"
        return f"Instance {self.uuid} could not be checked: {reason}"


def combine(sightings: Sequence[Sighting]) -> Presence:
    """Return PRESENT if any target has it, ABSENT only if all say so, else UNKNOWN."""
    if any(s.presence is Presence.PRESENT for s in sightings):
        return Presence.PRESENT
    if sightings and all(s.presence is Presence.ABSENT for s in sightings):
        return Presence.ABSENT
    return Presence.UNKNOWN


def settle_omissions(sightings: Sequence[Sighting]) -> list[Sighting]:
    """Return the sightings of one check, "not listed" ones made absent if a Nova saw it deleted.

    A UUID names one instance, made by one Nova, never reused: once a Nova
    reports it DELETED, no other region holds it, and the other reading of the
    same SMBIOS bytes (the byte-swapped twin) is not an instance either, but
    for a collision of random UUIDs. An omission from a listing alone proves
    nothing (see check/region.py); with that record it needs to prove nothing.
    """
    deleted = next(
        (s for s in sightings if s.presence is Presence.ABSENT and s.status == "DELETED"), None
    )
    if deleted is None:
        return list(sightings)
    return [
        dataclasses.replace(
            s,
            presence=Presence.ABSENT,
            detail=f"{s.detail}; but {deleted.target} reports {deleted.uuid} DELETED "
            "(a UUID names one instance)",
            rule="deleted-elsewhere",
        )
        if s.rule == NOT_LISTED and s.presence is Presence.UNKNOWN
        else s
        for s in sightings
    ]
