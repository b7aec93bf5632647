"""Pure decision logic: which hosts are candidates, what each answer means, the caps.

Nothing here does I/O. The runner feeds in Satellite records and service verdicts
and gets back decisions; every branch that is not a positive, authoritative absence
ends in "keep" or "skip".
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from instanceapi.reap.model import Action, Answer, Candidate, Decision, Host, HostDetail, Verdict

DEFAULT_PRODUCTS = ("OpenStack Compute", "OpenStack Nova")
PROTECT_PARAMETER = "instanceapi_protect"
_TRUE = frozenset({"true", "yes", "1", "on"})
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_NIL = str(uuid.UUID(int=0))
MASK = "*****"  # how Foreman shows a hidden parameter to a user who may not see it


@dataclass(frozen=True)
class Policy:
    """The knobs that decide candidates, guards and caps."""

    products: frozenset[str] = frozenset(p.casefold() for p in DEFAULT_PRODUCTS)
    exclude: tuple[str, ...] = ()
    protect_parameter: str = PROTECT_PARAMETER
    min_checkin_age: timedelta | None = None
    max_delete: int = 10
    max_delete_percent: float = 5.0


def canonical_uuid(raw: str | None) -> str | None:
    """Return `raw` as a lower-case 8-4-4-4-12 UUID, or None if it is not one.

    Accepts the same forms as the service (hyphenated or 32 hex digits, any case).
    The nil UUID is rejected: broken firmware reports it for many machines at once.
    """
    text = (raw or "").strip().lower()
    if _HEX32.fullmatch(text):
        text = str(uuid.UUID(hex=text))
    if not _CANONICAL.fullmatch(text) or text == _NIL:
        return None
    return text


def _skip_reason(host: Host, policy: Policy) -> tuple[str, str] | None:
    """Return (reason, detail) when `host` is not a candidate."""
    name = host.name.casefold()
    for pattern in policy.exclude:
        if fnmatch.fnmatchcase(name, pattern.casefold()):
            return "excluded-name", f"matches --exclude {pattern!r}"
    if host.product is None:
        return "not-openstack", "no DMI product-name fact"
    if host.product.strip().casefold() not in policy.products:
        return "not-openstack", f"product name {host.product!r}"
    if not (host.uuid or "").strip():
        return "no-uuid", "no virt::uuid fact"
    if canonical_uuid(host.uuid) is None:
        return "invalid-uuid", f"virt::uuid {host.uuid!r} is not a usable UUID"
    return None


def select(hosts: Iterable[Host], policy: Policy) -> tuple[list[Candidate], list[Decision]]:
    """Split hosts into candidates (OpenStack guests with a UUID) and skip decisions."""
    candidates: list[Candidate] = []
    skipped: list[Decision] = []
    for host in hosts:
        why = _skip_reason(host, policy)
        if why is None:
            candidates.append(Candidate(host, canonical_uuid(host.uuid) or ""))
        else:
            skipped.append(Decision(host, Action.SKIP, why[0], uuid=host.uuid, detail=why[1]))
    return candidates, skipped


def classify(
    candidates: Iterable[Candidate], verdicts: Mapping[str, Verdict]
) -> tuple[list[Decision], list[Candidate]]:
    """Turn verdicts into keep decisions, and return the absent candidates still eligible.

    A candidate linked to a compute resource is kept even when absent: deleting its
    record can destroy a VM when Foreman's `destroy_vm_on_host_delete` is on.
    """
    kept: list[Decision] = []
    absent: list[Candidate] = []
    for cand in candidates:
        verdict = verdicts.get(cand.uuid, Verdict(Answer.UNKNOWN, "no answer"))
        if verdict.answer is Answer.ABSENT and cand.host.compute_resource_id is None:
            absent.append(cand)
            continue
        reason = {
            Answer.PRESENT: "present",
            Answer.UNKNOWN: "no-authoritative-answer",
            Answer.ABSENT: "compute-resource",
        }[verdict.answer]
        kept.append(_decide(cand, Action.KEEP, reason, verdict))
    return kept, absent


def cap_breach(absent: int, candidates: int, policy: Policy) -> str | None:
    """Return why the plan is too large to trust, or None when it is within the caps."""
    if absent > policy.max_delete:
        return f"{absent} hosts absent, more than --max-delete {policy.max_delete}"
    if candidates and absent * 100 > policy.max_delete_percent * candidates:
        share = absent * 100 / candidates
        return (
            f"{absent} of {candidates} candidates absent ({share:.1f}%), "
            f"more than --max-delete-percent {policy.max_delete_percent:g}"
        )
    return None


def guard(cand: Candidate, detail: HostDetail, policy: Policy, now: datetime) -> str | None:
    """Return why an absent host must be kept after re-reading it, or None to go ahead.

    The re-read must show the same machine: same id and name, the same virt::uuid and
    the same registration (a new machine registering under the name keeps the id and
    name but brings a new virt::uuid and consumer). Anything missing keeps the host.
    """
    if detail.id != cand.host.id or detail.name != cand.host.name:
        return "host-changed"
    if canonical_uuid(detail.uuid) != cand.uuid:
        return "uuid-changed"
    host = cand.host
    if host.registration is None or host.registered_at is None:
        return "not-registered"
    if (detail.registration, detail.registered_at) != (host.registration, host.registered_at):
        return "re-registered"
    if detail.compute_resource_id is not None:
        return "compute-resource"
    if protected(detail.parameters.get(policy.protect_parameter)):
        return "protected"
    if policy.min_checkin_age is None:
        return None
    if detail.last_checkin is None:
        return "no-checkin-time"
    if now - detail.last_checkin < policy.min_checkin_age:
        return "recent-checkin"
    return None


def protected(value: str | None) -> bool:
    """Return whether a protection parameter's value protects; a hidden (masked) one does."""
    text = (value or "").strip().lower()
    return text in _TRUE or text == MASK


def absent_decision(cand: Candidate, action: Action, reason: str, detail: str = "") -> Decision:
    """Build the decision for a candidate the service reported absent."""
    return _decide(cand, action, reason, Verdict(Answer.ABSENT, detail))


def _decide(cand: Candidate, action: Action, reason: str, verdict: Verdict) -> Decision:
    return Decision(
        cand.host, action, reason, uuid=cand.uuid, answer=verdict.answer, detail=verdict.detail
    )
