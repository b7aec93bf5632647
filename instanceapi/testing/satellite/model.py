"""Hosts of the simulated Satellite, and the Foreman search subset it understands."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_TOKENS = re.compile(r'"[^"]*"|!=|!~|=|~|[()]|[^\s()"=!~]+')


class SearchError(ValueError):
    """The search uses syntax or a field this simulator does not know."""


@dataclass
class SimHost:
    """One host record."""

    id: int
    name: str
    facts: dict[str, str] = field(default_factory=dict)
    organization: str = "Default Organization"
    location: str = "Default Location"
    hostgroup: str | None = None  # the full title, e.g. "cloud/web"
    compute_resource_id: int | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    inherited_parameters: dict[str, str] = field(default_factory=dict)
    last_checkin: datetime | None = None

    def field_value(self, key: str) -> str | None:
        """Return the value of the search field `key` for this host."""
        simple = {
            "name": self.name,
            "organization": self.organization,
            "location": self.location,
            "hostgroup_title": self.hostgroup,
            "hostgroup": self.hostgroup.rsplit("/", 1)[-1] if self.hostgroup else None,
        }
        if key in simple:
            return simple[key]
        if key.startswith("params."):
            return {**self.inherited_parameters, **self.parameters}.get(key[7:])
        if key.startswith("facts."):
            return self.facts.get(key[6:])
        raise SearchError(f"Field '{key}' not recognized for searching!")

    def index_json(self) -> dict[str, Any]:
        """Return the host as the hosts index shows it."""
        group = self.hostgroup
        return {
            "id": self.id,
            "name": self.name,
            "certname": self.name,
            "organization_name": self.organization,
            "location_name": self.location,
            "hostgroup_title": group,
            "hostgroup_name": group.rsplit("/", 1)[-1] if group else None,
            "compute_resource_id": self.compute_resource_id,
            "compute_resource_name": f"cr-{self.compute_resource_id}"
            if self.compute_resource_id
            else None,
        }

    def show_json(self) -> dict[str, Any]:
        """Return the host as `GET /api/v2/hosts/:id` shows it."""
        own = [{"name": k, "value": v} for k, v in self.parameters.items()]
        merged = {**self.inherited_parameters, **self.parameters}
        body = {
            **self.index_json(),
            "parameters": own,
            "all_parameters": [{"name": k, "value": v} for k, v in merged.items()],
        }
        if self.last_checkin is not None:
            when = self.last_checkin.strftime("%Y-%m-%d %H:%M:%S UTC")
            body["subscription_facet_attributes"] = {"last_checkin": when}
        return body


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
        if len(clause) != 3 or clause[1] not in ("=", "!=", "~", "!~"):
            raise SearchError(f"cannot parse search clause {' '.join(clause)!r}")
        result.append((clause[0], clause[1], clause[2].strip('"')))
    return result


def matches(value: str | None, op: str, wanted: str) -> bool:
    """Apply one search operator the way Foreman does for strings."""
    if op == "=":
        return value == wanted
    if op == "!=":
        return value != wanted
    found = value is not None and wanted.lower() in value.lower()
    return found if op == "~" else not found
