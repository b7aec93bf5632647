"""Fail closed on identity: may a 404 from Nova be read as "absent"?

Nova answers 404, not 403, when a caller that is not admin asks for another
project's server. So a per-UUID 404 proves absence only once we have seen that
our credentials look up other projects' servers by id. We find out by listing
all projects (403: we cannot) and fetching a server of another project by id.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from instanceapi.openstack import Compute, Identity, ServerRecord, UnexpectedBody, UpstreamError

log = logging.getLogger(__name__)
#: Other projects' servers tried by one probe before it gives up (retried later).
PROBE_TRIES = 3
RETRY_AFTER_FAILURE = 30.0
NOT_BUILT = frozenset({"BUILD", "UNKNOWN"})


class Rule(enum.Enum):
    """How this region's absence is decided."""

    BY_ID = "by-id"  # Nova's 404 for GET /servers/{id} is authoritative
    LISTING = "listing"  # only the all-project listing can prove absence
    NONE = "none"  # nothing we can see proves absence


@dataclass(frozen=True)
class Visibility:
    """The rule in force for one region, why, and when it was established."""

    rule: Rule
    reason: str
    checked_at: float
    #: The token's project and roles when the rule was established.
    identity: Identity | None = None


def probe(nova: Compute, now: float) -> Visibility:
    """Establish the rule for the region `nova` asks; raise UpstreamError if it cannot be asked."""
    me = nova.identity()
    return dataclasses.replace(_rule_for(nova, me, now), identity=me)


def _rule_for(nova: Compute, me: Identity, now: float) -> Visibility:
    try:
        # Unfiltered: the one listing that does not silently skip a down cell.
        page = nova.unfiltered_page(detail=True)
    except UpstreamError as ex:
        if ex.status == 403:
            return Visibility(
                Rule.NONE,
                "the credentials cannot list all projects' servers "
                "(Nova answered 403 to all_tenants=1)",
                now,
            )
        raise
    others = [s for s in page if s.tenant_id not in (None, me.project_id) and _built(s)]
    for other in others[:PROBE_TRIES]:
        found = _probe_with(nova, other.id, now)
        if found is not None:
            return found
    if others:
        # Every server tried answered UNKNOWN (its cell went down) or still building.
        raise UpstreamError(
            nova.name,
            "visibility probe inconclusive: no built server of another project "
            "answered GET /servers/{id} with its full record",
        )
    if "admin" in me.roles:
        return Visibility(
            Rule.BY_ID,
            "no server of another project to probe with; the token "
            "has the admin role (Nova's context_is_admin)",
            now,
        )
    return Visibility(
        Rule.LISTING, "no server of another project to probe with and no admin role", now
    )


def _probe_with(nova: Compute, server_id: str, now: float) -> Visibility | None:
    """Return the rule a GET of another project's built server proves, None if it proves none.

    NOTE: the probe's server id goes to the log, never into a reason: reasons
    reach clients, and it is another project's.
    """
    try:
        shown = nova.show(server_id)
    except UnexpectedBody as ex:
        log.info("%s: visibility probe: server %s: %s: no proof", nova.name, server_id, ex.reason)
        return None
    if shown is None:
        log.info("%s: visibility probe: GET of server %s answered 404", nova.name, server_id)
        return Visibility(
            Rule.LISTING,
            "the credentials list all projects but GET of another project's server "
            "(built) answered 404",
            now,
        )
    if shown.id != server_id.lower() or not _built(shown, full=True):
        log.info(
            "%s: visibility probe: server %s answered %s, not its full record: no proof",
            nova.name,
            server_id,
            shown.status,
        )
        return None
    log.info("%s: visibility probe: GET of server %s answered 200", nova.name, server_id)
    return Visibility(
        Rule.BY_ID,
        "GET of another project's server answered 200 (built, with its full record)",
        now,
    )


def _built(server: ServerRecord, *, full: bool = False) -> bool:
    """Return True for a server past building, shown in full (not a down cell's UNKNOWN stub).

    NOTE: a server still being built answers GET even to a reader of another
    project until it is scheduled to a cell, and a down cell's server answers
    200 UNKNOWN to that reader: neither proves that other projects are visible.
    """
    if server.status in NOT_BUILT or server.vm_state == "building":
        return False
    return not full or server.full


class VisibilityTracker:
    """Keep one region's rule current: probed at start-up, then every `interval`."""

    def __init__(
        self, nova: Compute, *, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        #: This region's Nova client.
        self.nova = nova
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._current = Visibility(Rule.NONE, "all-project visibility not established yet", -1.0)
        self._next_probe = 0.0

    def peek(self) -> Visibility:
        """Return the rule in force without probing."""
        return self._current

    def current(self, identity: Identity | None = None) -> Visibility:
        """Return the rule in force, probing first when it is due.

        Given the token's current `identity`, probe at once if it is not the one
        the rule was established with: a token re-issued without the admin role
        (Keystone revokes tokens when a role assignment is removed) must not
        inherit the by-id rule of its predecessor.
        """
        with self._lock:
            now = self._clock()
            known = self._current.identity
            changed = identity is not None and known is not None and identity != known
            if changed or now >= self._next_probe:
                self._refresh(now, identity_changed=changed)
            return self._current

    def _refresh(self, now: float, *, identity_changed: bool = False) -> None:
        try:
            found = probe(self.nova, now)
        except UpstreamError as ex:
            if identity_changed:
                self._current = Visibility(
                    Rule.NONE,
                    "the token's project or roles changed and visibility could not be "
                    f"re-established: {ex.reason}",
                    now,
                )
                self._next_probe = now + min(RETRY_AFTER_FAILURE, self._interval)
                return
            # Not evidence either way: keep what we knew, and ask again soon.
            self._next_probe = now + min(RETRY_AFTER_FAILURE, self._interval)
            log.warning(
                "%s: visibility probe failed, keeping rule %s: %s",
                self.nova.name,
                self._current.rule.value,
                ex.reason,
            )
            return
        if found.rule is not self._current.rule:
            log.info(
                "%s: absence rule is now %s: %s", self.nova.name, found.rule.value, found.reason
            )
        self._current = found
        self._next_probe = now + self._interval
