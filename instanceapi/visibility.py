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

from instanceapi.openstack import Compute, Identity, UpstreamError

log = logging.getLogger(__name__)
PROBE_PAGE = 100
RETRY_AFTER_FAILURE = 30.0


class Rule(enum.Enum):
    """How this target's absence is decided."""

    BY_ID = "by-id"  # Nova's 404 for GET /servers/{id} is authoritative
    LISTING = "listing"  # only the all-project listing can prove absence
    NONE = "none"  # nothing we can see proves absence


@dataclass(frozen=True)
class Visibility:
    """The rule in force for one target, why, and when it was established."""

    rule: Rule
    reason: str
    checked_at: float
    #: The token's project and roles when the rule was established.
    identity: Identity | None = None


def probe(target: Compute, now: float) -> Visibility:
    """Establish the rule for `target`; raise UpstreamError if it cannot be asked."""
    me = target.identity()
    return dataclasses.replace(_rule_for(target, me, now), identity=me)


def _rule_for(target: Compute, me: Identity, now: float) -> Visibility:
    try:
        page = next(target.list_servers(page_limit=PROBE_PAGE, max_pages=1), [])
    except UpstreamError as ex:
        if ex.status == 403:
            return Visibility(
                Rule.NONE,
                "the credentials cannot list all projects' servers "
                "(Nova answered 403 to all_tenants=1)",
                now,
            )
        raise
    other = next(
        (
            s
            for s in page
            if s.get("tenant_id") not in (None, me.project_id) and s.get("status") != "UNKNOWN"
        ),
        None,
    )
    if other is not None:
        # NOTE: the probe's server id and project go to the log, never into a
        # reason: reasons reach clients, and these are another project's.
        seen = target.show(str(other["id"])) is not None
        log.info(
            "%s: visibility probe: GET of server %s of project %s answered %s",
            target.name,
            other["id"],
            other.get("tenant_id"),
            200 if seen else 404,
        )
        if seen:
            return Visibility(Rule.BY_ID, "GET of another project's server answered 200", now)
        return Visibility(
            Rule.LISTING,
            "the credentials list all projects but GET of another project's server answered 404",
            now,
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


class VisibilityTracker:
    """Keep one target's rule current: probed at start-up, then every `interval`."""

    def __init__(
        self, target: Compute, *, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._target = target
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
            found = probe(self._target, now)
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
                self._target.name,
                self._current.rule.value,
                ex.reason,
            )
            return
        if found.rule is not self._current.rule:
            log.info(
                "%s: absence rule is now %s: %s", self._target.name, found.rule.value, found.reason
            )
        self._current = found
        self._next_probe = now + self._interval
