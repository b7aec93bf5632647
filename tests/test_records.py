"""Nova's server JSON is read in one place (instanceapi/openstack/records.py).

Parsing is tested on the JSON Nova sends (shared/upstream-facts.md); NovaRegion's
use of it at Nova's HTTP boundary (requests-mock, real keystoneauth1 + novaclient).
"""

from __future__ import annotations

from typing import Any

import pytest

from instanceapi.openstack import (
    MalformedRecord,
    ServerRecord,
    UnexpectedBody,
    UpstreamError,
    parse_page,
    parse_server,
)
from tests.fakes import FakeCloud, new_uuid


def full_record(server_id: str, **overrides: Any) -> dict[str, Any]:
    """Return a server as Nova's detail view shows it (the fields we read, and others)."""
    return {
        "id": server_id,
        "name": "vm-1",
        "status": "ACTIVE",
        "tenant_id": "b" * 32,
        "user_id": "c" * 32,
        "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:task_state": None,
        "links": [],
        **overrides,
    }


def down_cell_stub(server_id: str) -> dict[str, Any]:
    """Return a down cell's minimal record (2.69+): no name, no OS-EXT-STS:vm_state."""
    return {
        "id": server_id,
        "status": "UNKNOWN",
        "tenant_id": "b" * 32,
        "created": "2026-11-30T00:00:00Z",
        "links": [],
        "OS-EXT-AZ:availability_zone": "UNKNOWN",
        "OS-EXT-STS:power_state": 0,
    }


# -- parsing --------------------------------------------------------------------------------


def test_a_full_record() -> None:
    server_id = new_uuid()
    record = parse_server(full_record(server_id))
    assert record == ServerRecord(
        id=server_id, status="ACTIVE", tenant_id="b" * 32, vm_state="active", full=True
    )
    assert record.listed_status == "ACTIVE"


def test_a_deleted_record_from_changes_since() -> None:
    record = parse_server(
        full_record(new_uuid(), status="DELETED", **{"OS-EXT-STS:vm_state": "deleted"})
    )
    assert (record.status, record.vm_state, record.full) == ("DELETED", "deleted", True)


def test_a_down_cells_stub_is_not_a_full_record() -> None:
    server_id = new_uuid()
    record = parse_server(down_cell_stub(server_id))
    assert record == ServerRecord(id=server_id, status="UNKNOWN", tenant_id="b" * 32)
    assert record.full is False
    assert record.vm_state is None


def test_a_non_detail_item_has_no_status_and_is_listed_as_unknown() -> None:
    server_id = new_uuid()
    record = parse_server({"id": server_id, "name": "vm-1", "links": []})
    assert record.status is None
    assert record.listed_status == "UNKNOWN"
    assert record.tenant_id is None
    assert record.full is False  # a name, but no vm_state


def test_the_id_is_case_folded() -> None:
    server_id = new_uuid()
    assert parse_server(full_record(server_id.upper())).id == server_id


def test_a_vm_state_that_is_not_a_string_is_none() -> None:
    record = parse_server(full_record(new_uuid(), **{"OS-EXT-STS:vm_state": None}))
    assert record.vm_state is None
    assert record.full is True  # the key is there: Nova showed the full record


@pytest.mark.parametrize(
    ("item", "said"),
    [
        ("id-of-nothing", "is a JSON str, not a server object"),
        (["id"], "is a JSON list, not a server object"),
        (None, "is a JSON NoneType, not a server object"),
        ({"status": "ACTIVE"}, "has no server id"),
        ({"id": "", "status": "ACTIVE"}, "has no server id"),
        ({"id": 7, "status": "ACTIVE"}, "has no server id"),
        ({"id": new_uuid(), "status": ["ACTIVE"]}, "has a status that is not a string"),
    ],
)
def test_what_is_not_a_server_object_is_malformed(item: object, said: str) -> None:
    with pytest.raises(MalformedRecord, match=said):
        parse_server(item)
    with pytest.raises(MalformedRecord, match=f"^item 2 {said}"):
        parse_page([full_record(new_uuid()), item, full_record(new_uuid())])


@pytest.mark.parametrize("servers", ["none", {"id": new_uuid()}, None])
def test_servers_that_are_not_a_list_are_malformed(servers: object) -> None:
    with pytest.raises(MalformedRecord, match=r"'servers' is a JSON .*, not a list"):
        parse_page(servers)


def test_a_page_keeps_every_server_in_order() -> None:
    ids = [new_uuid() for _ in range(3)]
    page = [down_cell_stub(ids[0]), full_record(ids[1]), full_record(ids[2].upper())]
    assert [r.id for r in parse_page(page)] == ids


# -- NovaRegion at Nova's HTTP boundary -------------------------------------------------------


@pytest.fixture
def fake(requests_mock: Any) -> FakeCloud:
    return FakeCloud(requests_mock)


def test_show_returns_the_record(fake: FakeCloud) -> None:
    server_id = fake.add()
    record = fake.nova().show(server_id)
    assert record == ServerRecord(
        id=server_id, status="ACTIVE", tenant_id=fake.project_id, vm_state="active", full=True
    )


def test_show_of_a_down_cells_server_is_its_stub(fake: FakeCloud) -> None:
    server_id = fake.add()
    fake.down.add(server_id)
    record = fake.nova().show(server_id)
    assert record is not None
    assert (record.status, record.full) == ("UNKNOWN", False)


@pytest.mark.parametrize(
    "body",
    [
        {"id": "someone-else", "status": "ACTIVE"},
        {"id": new_uuid(), "status": "ACTIVE"},
        {"name": "no id", "status": "ACTIVE"},
        {"status": ["ACTIVE"]},
    ],
)
def test_show_of_another_servers_record_is_an_unexpected_body(
    fake: FakeCloud, body: dict[str, Any]
) -> None:
    server_id = new_uuid()
    fake.fail(rf".*/servers/{server_id}$", json={"server": body})
    with pytest.raises(UnexpectedBody):
        fake.nova().show(server_id)


def test_show_without_a_status_is_an_unexpected_body(fake: FakeCloud) -> None:
    server_id = new_uuid()
    fake.fail(rf".*/servers/{server_id}$", json={"server": {"id": server_id, "name": "vm"}})
    with pytest.raises(UnexpectedBody):
        fake.nova().show(server_id)


def test_a_listing_yields_records(fake: FakeCloud) -> None:
    ids = {fake.add() for _ in range(3)}
    pages = list(fake.nova().list_servers())
    assert all(isinstance(r, ServerRecord) for page in pages for r in page)
    assert {r.id for page in pages for r in page} == ids


def test_a_non_server_item_in_a_listing_is_an_upstream_error(fake: FakeCloud) -> None:
    fake.fail(r".*/servers/detail.*", json={"servers": [full_record(new_uuid()), 42]})
    with pytest.raises(UpstreamError, match="malformed page: item 2 is a JSON int"):
        list(fake.nova().list_servers())


def test_the_marker_is_the_id_as_nova_wrote_it(fake: FakeCloud) -> None:
    """Records are case-folded; the next page still starts after Nova's own spelling."""
    fake.page_size = 1
    upper = new_uuid().upper()
    fake.add(server_id=upper)
    fake.add()
    pages = list(fake.nova().list_servers(page_limit=1))
    assert upper.lower() in {r.id for page in pages for r in page}
    assert fake.calls("GET", f"marker={upper}") == 1


def test_the_unfiltered_page_shows_a_down_cells_stubs(fake: FakeCloud) -> None:
    down = fake.add()
    fake.add()
    fake.down.add(down)
    page = fake.nova().unfiltered_page(detail=True)
    assert [(r.id, r.status, r.full) for r in page if r.id == down] == [(down, "UNKNOWN", False)]
