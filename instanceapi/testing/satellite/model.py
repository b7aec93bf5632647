"""Hosts of the simulated Satellite, and the Foreman search subset it understands."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_TOKENS = re.compile(r'"[^"]*"|!=|!~|=|~|[()]|[^\s()"=!~]+')
MASK = "*****"  # how Foreman renders a hidden parameter's value
ORGANIZATIONS = {"Default Organization": 1}
LOCATIONS = {"Default Location": 2}


class SearchError(ValueError):
    """The search uses syntax or a field this simulator does not know."""


def taxonomy_id(table: dict[str, int], name: str) -> int:
    """Return the id of an organization or location, numbering new names as they come."""
    return table.setdefault(name, max(table.values(), default=0) + 10)


@dataclass
class SimHost:
    """One host record, with Katello's subscription facet when registered."""

    id: int
    name: str
    facts: dict[str, str] = field(default_factory=dict)
    organization: str = "Default Organization"
    location: str = "Default Location"
    hostgroup: str | None = None  # the full title, e.g. "cloud/web"
    compute_resource_id: int | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    inherited_parameters: dict[str, str] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)  # parameter names marked hidden
    last_checkin: datetime | None = None
    registration: str | None = None  # the Candlepin consumer uuid
    registered_at: datetime | None = None

    def field_value(self, key: str) -> str | None:
        """Return the value of the search field `key` for this host."""
        simple = {
            "id": str(self.id),
            "name": self.name,
            "organization": self.organization,
            "organization_id": str(taxonomy_id(ORGANIZATIONS, self.organization)),
            "location": self.location,
            "location_id": str(taxonomy_id(LOCATIONS, self.location)),
            "hostgroup_title": self.hostgroup,
            "hostgroup": self.hostgroup.rsplit("/", 1)[-1] if self.hostgroup else None,
            "compute_resource": f"cr-{self.compute_resource_id}"
            if self.compute_resource_id
            else None,
        }
        if key in simple:
            return simple[key]
        # NOTE: Foreman's search_by_params reads Parameter unscoped: view_params is not asked.
        if key.startswith("params."):
            return {**self.inherited_parameters, **self.parameters}.get(key[7:])
        if key.startswith("facts."):
            return self.facts.get(key[6:])
        raise SearchError(f"Field '{key}' not recognized for searching!")

    def index_json(self) -> dict[str, Any]:
        """Return the host as the hosts index shows it."""
        group = self.hostgroup
        resource = self.compute_resource_id
        return {
            "id": self.id,
            "name": self.name,
            "certname": self.name,
            "organization_id": taxonomy_id(ORGANIZATIONS, self.organization),
            "organization_name": self.organization,
            "location_id": taxonomy_id(LOCATIONS, self.location),
            "location_name": self.location,
            "hostgroup_id": zlib.crc32(group.encode()) % 1000 + 1 if group else None,
            "hostgroup_title": group,
            "hostgroup_name": group.rsplit("/", 1)[-1] if group else None,
            "compute_resource_id": resource,
            "compute_resource_name": f"cr-{resource}" if resource else None,
            "subscription_facet_attributes": self._facet(),
        }

    def show_json(
        self, *, view_params: bool, reveal: bool, common: dict[str, str]
    ) -> dict[str, Any]:
        """Return the host as `GET /api/v2/hosts/:id` shows it to a caller.

        Without `view_params` the caller sees no host-level (or inherited) parameter,
        only the global ones; a hidden value shows as `*****` unless `reveal`.
        """
        own = self.parameters if view_params else {}
        merged = {**common, **(self.inherited_parameters if view_params else {}), **own}
        body = {
            **self.index_json(),
            "parameters": [self._param(k, v, reveal) for k, v in own.items()],
            "all_parameters": [self._param(k, v, reveal) for k, v in merged.items()],
        }
        return body

    def _param(self, name: str, value: str, reveal: bool) -> dict[str, Any]:
        hidden = name in self.hidden
        shown = MASK if hidden and not reveal else value
        return {"name": name, "value": shown, "hidden_value?": hidden}

    def _facet(self) -> dict[str, Any] | None:
        if self.registration is None:
            return None
        return {
            "uuid": self.registration,
            "registered_at": _foreman_time(self.registered_at),
            "last_checkin": _foreman_time(self.last_checkin),
        }


def _foreman_time(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else None


def parse_search(text: str) -> list[tuple[str, str, str]]:
    """Split a search into (field, op, value) clauses joined by `and`."""
    tokens = [t for t in _TOKENS.findall(text or "") if t not in ("(", ")")]
    clauses: list[list[str]] = [[]]
    for token in tokens:
        if token.lower() == "and":
            clauses.append([])
        elif token.lower() in ("or", "not"):
            raise SearchError(f"this simulator does not support '{token}'")
        else:
            clauses[-1].append(token)
    result = []
    for clause in clauses:
        if not clause:
            continue
        if len(clause) == 2 and clause[0] in ("null?", "set?"):
            result.append((clause[1], clause[0], ""))
            continue
        if len(clause) != 3 or clause[1] not in ("=", "!=", "~", "!~"):
            raise SearchError(f"cannot parse search clause {' '.join(clause)!r}")
        result.append((clause[0], clause[1], clause[2].strip('"')))
    return result


def matches(value: str | None, op: str, wanted: str) -> bool:
    """Apply one search operator the way Foreman does for strings."""
    if op in ("null?", "set?"):
        return (value is None) == (op == "null?")
    if op == "=":
        return value == wanted
    if op == "!=":
        return value != wanted
    found = value is not None and wanted.lower() in value.lower()
    return found if op == "~" else not found
