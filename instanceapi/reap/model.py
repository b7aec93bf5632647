"""Plain data shared by the reap modules: hosts, answers, decisions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Answer(enum.StrEnum):
    """What the service said about one UUID."""

    PRESENT = "present"
    ABSENT = "absent"  # authoritative: 404 with the absence marker, or exists: false
    UNKNOWN = "unknown"  # anything else; never grounds for deletion


class Action(enum.StrEnum):
    """What reap does with one host record."""

    SKIP = "skip"  # not a candidate: the service is never asked
    KEEP = "keep"  # asked, and not to be deleted
    PENDING = "pending"  # absent, awaiting confirmation by later runs
    DELETE = "delete"  # absent and confirmed


@dataclass(frozen=True)
class Verdict:
    """The service's answer for one UUID, with a human-readable detail."""

    answer: Answer
    detail: str = ""


@dataclass(frozen=True)
class Host:
    """A Satellite host record as read from the hosts index and fact values."""

    id: int
    name: str
    uuid: str | None = None  # the raw virt::uuid fact
    product: str | None = None  # the raw DMI product-name fact
    compute_resource_id: int | None = None
    organization_id: int | None = None
    location_id: int | None = None
    registration: str | None = None  # Katello's subscription_facet_attributes.uuid
    registered_at: str | None = None  # ... and .registered_at, as Satellite wrote it


@dataclass(frozen=True)
class HostDetail:
    """What `GET /api/v2/hosts/:id` says about a host, re-read just before deciding."""

    id: int
    name: str
    compute_resource_id: int | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    last_checkin: datetime | None = None
    registration: str | None = None
    registered_at: str | None = None
    uuid: str | None = None  # virt::uuid re-read right before deciding


@dataclass(frozen=True)
class Candidate:
    """An OpenStack guest with a valid UUID, in canonical lower-case form."""

    host: Host
    uuid: str


@dataclass(frozen=True)
class Decision:
    """One line of the plan: a host, the answer about it, what to do and what happened."""

    host: Host
    action: Action
    reason: str
    uuid: str | None = None
    answer: Answer | None = None
    detail: str = ""
    outcome: str = ""
