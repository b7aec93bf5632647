"""Nova's server JSON, read in one place: what the rest of the service knows of a server.

Everything outside ``instanceapi.openstack`` sees a ``ServerRecord``, never a
Nova JSON key. A server object that cannot be read (not an object, no string
id, a status that is not a string) is ``MalformedRecord``: doubt, never a
server skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Nova's status for a server of an unreachable cell (from microversion 2.69).
UNKNOWN = "UNKNOWN"
#: Nova's status for a deleted server (changes-since listings show them).
DELETED = "DELETED"
VM_STATE = "OS-EXT-STS:vm_state"


class MalformedRecord(ValueError):
    """A server object that is not one: the reason says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """One server as Nova showed or listed it."""

    #: The server's id, lower-case (Nova's ids are UUIDs).
    id: str
    #: Nova's status; None when the answer had none (the non-detail listing's records).
    status: str | None = None
    #: The server's project, when shown (detail views).
    tenant_id: str | None = None
    #: ``OS-EXT-STS:vm_state`` (e.g. "building", "deleted"), when shown and a string.
    vm_state: str | None = None
    #: Shown in full: it has ``name`` and ``OS-EXT-STS:vm_state``, which a down
    #: cell's minimal record (id, status UNKNOWN, tenant_id, ...) lacks.
    full: bool = False

    @property
    def listed_status(self) -> str:
        """Return the status to index: UNKNOWN when Nova gave none."""
        return self.status or UNKNOWN


def parse_server(item: object) -> ServerRecord:
    """Return the record of one server object (a JSON object); raise MalformedRecord if it is none.

    The reason reads after "the item" (e.g. "has no server id").
    """
    if not isinstance(item, dict):
        raise MalformedRecord(f"is a JSON {type(item).__name__}, not a server object")
    server_id = item.get("id")
    if not isinstance(server_id, str) or not server_id:
        raise MalformedRecord("has no server id")
    status = item.get("status")
    if status is not None and not isinstance(status, str):
        raise MalformedRecord("has a status that is not a string")
    tenant_id = item.get("tenant_id")
    vm_state = item.get(VM_STATE)
    return ServerRecord(
        id=server_id.lower(),
        status=status,
        tenant_id=None if tenant_id is None else str(tenant_id),
        vm_state=vm_state if isinstance(vm_state, str) else None,
        full="name" in item and VM_STATE in item,
    )


def parse_page(servers: object) -> list[ServerRecord]:
    """Return the records of a listing page's ``servers``; raise MalformedRecord on any doubt.

    NOTE: anything that is not a server object (a proxy's garbage, a truncated
    body) makes the whole page doubt: never a server silently skipped.
    """
    if not isinstance(servers, list):
        raise MalformedRecord(f"'servers' is a JSON {type(servers).__name__}, not a list")
    records = []
    for number, item in enumerate(servers, start=1):
        try:
            records.append(parse_server(item))
        except MalformedRecord as ex:
            raise MalformedRecord(f"item {number} {ex}") from None
    return records
