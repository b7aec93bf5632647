"""Foreman's index envelopes, paging and ordering, for hosts and for fact values.

What the real API does (Foreman 3.9-3.12, read in its source):
- `per_page` blank means the `entries_per_page` setting (20); any number is served as
  asked, uncapped. On fact values `per_page=all` becomes `LIMIT 0`: no rows at all.
- fact values are paged by rows, ordered by `value` unless `order=host_id asc`, and
  returned as a hash keyed by host name; `subtotal` is the number of hosts in that
  hash, not the number of matching rows. PostgreSQL gives no order among equal
  values: ties come here in descending host id, an order no client can rely on.
- hosts are ordered by name unless `order=id asc`; `thin=true` reorders by name and
  returns only id and name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from instanceapi.testing.satellite.model import SearchError, SimHost, matches, parse_search

ENTRIES_PER_PAGE = 20
FactRow = tuple[SimHost, str, str]


def page_window(
    raw_page: str | None, raw_per_page: str | None, *, all_rows: int
) -> tuple[int, int]:
    """Return (page, per_page); `all_rows` is what `per_page=all` means on this index."""
    page = int(raw_page) if raw_page and raw_page.isdigit() and int(raw_page) > 0 else 1
    if raw_per_page == "all":
        return page, all_rows
    if raw_per_page and raw_per_page.isdigit():
        return page, int(raw_per_page)
    return page, ENTRIES_PER_PAGE


def select(rows: Sequence[Any], search: str, get: Callable[[Any, str], str | None]) -> list[Any]:
    """Return the rows matching a Foreman search (raises SearchError)."""
    clauses = parse_search(search)
    return [r for r in rows if all(matches(get(r, f), op, v) for f, op, v in clauses)]


def order_hosts(hosts: list[SimHost], order: str, thin: bool) -> list[SimHost]:
    """Order hosts like Foreman's index: by name, or by id with `order=id asc`."""
    key = order.strip().lower()
    if key == "id asc" and not thin:
        return sorted(hosts, key=lambda h: h.id)
    if key == "id desc" and not thin:
        return sorted(hosts, key=lambda h: -h.id)
    if key in ("", "name asc") or thin:
        return sorted(hosts, key=lambda h: h.name)
    raise SearchError(f"the field '{order.split()[0]}' in the order statement is not valid")


def order_facts(rows: list[FactRow], order: str) -> list[FactRow]:
    """Order fact rows like Foreman: by value (ties unordered), or by host id."""
    key = order.strip().lower()
    if key == "host_id asc":
        return sorted(rows, key=lambda r: (r[0].id, r[1]))
    if key in ("", "value asc"):
        return sorted(rows, key=lambda r: (r[2], -r[0].id))
    raise SearchError(f"the field '{order.split()[0]}' in the order statement is not valid")


def fact_field(row: FactRow, key: str) -> str | None:
    """Return the value of a fact-value search field; `host = 12` names a host by id."""
    host, fact, value = row
    if key in ("fact", "name"):
        return fact
    if key == "value":
        return value
    if key == "host":
        return host.name
    if key.startswith("host.") or key in ("organization_id", "location_id"):
        return host.field_value(key.removeprefix("host."))
    raise SearchError(f"Field '{key}' not recognized for searching!")


def host_id_search(search: str) -> tuple[str, int | None]:
    """Pull `host = <digits>` out of a fact-value search: Foreman reads it as a host id."""
    clauses = [c.strip() for c in search.split(" and ")]
    for clause in clauses:
        name, _, value = clause.partition("=")
        if name.strip() == "host" and value.strip().strip('"').isdigit():
            rest = " and ".join(c for c in clauses if c is not clause)
            return rest, int(value.strip().strip('"'))
    return search, None


def envelope(
    *, total: int, subtotal: int, page: int, per_page: int, search: str | None, order: str
) -> dict[str, Any]:
    """Return Foreman's index envelope without `results`."""
    by, _, direction = order.partition(" ")
    return {
        "total": total,
        "subtotal": subtotal,
        "page": page,
        "per_page": per_page,
        "search": search,
        "sort": {"by": by or None, "order": direction or None},
    }


def group_by_host(rows: Sequence[FactRow]) -> dict[str, dict[str, str]]:
    """Return fact rows as Foreman's `{host name: {fact: value}}` hash."""
    grouped: dict[str, dict[str, str]] = {}
    for host, fact, value in rows:
        grouped.setdefault(host.name, {})[fact] = value
    return grouped
