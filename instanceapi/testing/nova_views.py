"""How Nova renders servers, by microversion and caller."""

from __future__ import annotations

import functools
import hashlib

from instanceapi.testing.model import FakeServer, nova_time, nova_usage_time

Version = tuple[int, int]
FLAVORS = {"m1.small": {"id": "2", "vcpus": 1, "ram": 2048, "disk": 20}}
UNEXPECTED = (
    "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach "
    "the Nova API log if possible.\n<class 'nova.exception.NovaException'>"
)
FAULT_NAMES = {
    400: "badRequest",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def fault_body(status: int, message: str | None = None) -> dict[str, object]:
    """Nova's error body, e.g. ``{"itemNotFound": {"code": 404, "message": ...}}``."""
    name = FAULT_NAMES.get(status, "computeFault")
    if message is None:
        message = UNEXPECTED if name == "computeFault" else "The server could not comply."
    return {name: {"code": status, "message": message}}


def links(nova_url: str, server_id: str) -> list[dict[str, str]]:
    """Self and bookmark links of a server."""
    root = nova_url.rsplit("/v2.1", 1)[0]
    return [
        {"rel": "self", "href": f"{nova_url}/servers/{server_id}"},
        {"rel": "bookmark", "href": f"{root}/servers/{server_id}"},
    ]


def summary(server: FakeServer, nova_url: str) -> dict[str, object]:
    """``GET /servers`` item (deleted servers look the same)."""
    return {"id": server.id, "links": links(nova_url, server.id), "name": server.name}


def down_summary(server: FakeServer, nova_url: str) -> dict[str, object]:
    """``GET /servers`` item for a server in an unreachable cell (>= 2.69)."""
    return {"id": server.id, "status": "UNKNOWN", "links": links(nova_url, server.id)}


def down_detail(server: FakeServer, nova_url: str) -> dict[str, object]:
    """Show / detail record for a server in an unreachable cell (>= 2.69): no name, no vm_state."""
    root = nova_url.rsplit("/v2.1", 1)[0]
    return {
        "id": server.id,
        "status": "UNKNOWN",
        "tenant_id": server.project_id,
        "user_id": server.user_id,
        "created": nova_time(server.created_at),
        "links": links(nova_url, server.id),
        "image": {
            "id": server.image_id,
            "links": [{"rel": "bookmark", "href": f"{root}/images/{server.image_id}"}],
        },
        "flavor": _flavor(server, nova_url, (2, 69)),
        "OS-EXT-AZ:availability_zone": "UNKNOWN",
        "OS-EXT-STS:power_state": 0,
    }


def _flavor(server: FakeServer, nova_url: str, version: Version) -> dict[str, object]:
    spec = FLAVORS.get(server.flavor, FLAVORS["m1.small"])
    if version < (2, 47):
        root = nova_url.rsplit("/v2.1", 1)[0]
        return {"id": spec["id"], "links": [{"rel": "bookmark", "href": f"{root}/flavors/2"}]}
    return {
        "vcpus": spec["vcpus"],
        "ram": spec["ram"],
        "disk": spec["disk"],
        "ephemeral": 0,
        "swap": 0,
        "original_name": server.flavor,
        "extra_specs": {},
    }


def _admin_fields(server: FakeServer, version: Version) -> dict[str, object]:
    """Extended server attributes: admin-only under Nova's default policy."""
    out: dict[str, object] = {
        "OS-EXT-SRV-ATTR:host": server.host,
        "OS-EXT-SRV-ATTR:hypervisor_hostname": server.host,
        "OS-EXT-SRV-ATTR:instance_name": f"instance-{int(server.id[:6], 16):08x}",
    }
    if version >= (2, 3):
        out["OS-EXT-SRV-ATTR:hostname"] = server.name
        out["OS-EXT-SRV-ATTR:reservation_id"] = f"r-{server.id[:8]}"
        out["OS-EXT-SRV-ATTR:launch_index"] = 0
    if version >= (2, 16):
        out["host_status"] = "UP" if server.host else ""
    return out


# (since microversion, key, value); tuples serialise as JSON lists.
VERSIONED_FIELDS: tuple[tuple[Version, str, object], ...] = (
    ((2, 9), "locked", False),
    ((2, 19), "description", None),
    ((2, 26), "tags", ()),
    ((2, 63), "trusted_image_certificates", None),
    ((2, 73), "locked_reason", None),
    ((2, 96), "pinned_availability_zone", None),
)


@functools.cache
def _versioned_fields(version: Version) -> tuple[tuple[str, object], ...]:
    return tuple((key, value) for since, key, value in VERSIONED_FIELDS if version >= since)


def detail(
    server: FakeServer, nova_url: str, version: Version, *, is_admin: bool
) -> dict[str, object]:
    """Full server record (show and ``/servers/detail``)."""
    root = nova_url.rsplit("/v2.1", 1)[0]
    host_id = (
        hashlib.sha224((server.project_id + server.host).encode()).hexdigest()
        if server.host
        else ""
    )
    out: dict[str, object] = {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "tenant_id": server.project_id,
        "user_id": server.user_id,
        "metadata": {},
        "hostId": host_id,
        "image": {
            "id": server.image_id,
            "links": [{"rel": "bookmark", "href": f"{root}/images/{server.image_id}"}],
        },
        "flavor": _flavor(server, nova_url, version),
        "created": nova_time(server.created_at),
        "updated": nova_time(server.updated_at),
        "addresses": {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links(nova_url, server.id),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": "nova" if server.host else "",
        "config_drive": "",
        "key_name": None,
        "OS-SRV-USG:launched_at": nova_usage_time(server.launched_at),
        "OS-SRV-USG:terminated_at": nova_usage_time(server.deleted_at),
        "OS-EXT-STS:task_state": server.task_state,
        "OS-EXT-STS:vm_state": server.vm_state,
        "OS-EXT-STS:power_state": server.power_state,
        "os-extended-volumes:volumes_attached": [],
    }
    if server.status in ("ACTIVE", "BUILD"):
        out["progress"] = 100 if server.status == "ACTIVE" else 0
    if not server.deleted:
        out["security_groups"] = [{"name": "default"}]
    if is_admin:
        out.update(_admin_fields(server, version))
    out.update(_versioned_fields(version))
    return out
