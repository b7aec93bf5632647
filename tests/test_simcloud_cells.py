"""The simulated Nova's down cells and servers being built, as the shared upstream facts say."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from keystoneauth1 import session

from instanceapi.testing import SimulatedCloud
from instanceapi.testing.clients import password_session

EPOCH = "1970-01-01T00:00:00Z"


@pytest.fixture
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud(max_limit=3) as running:
        yield running


def get(sess: session.Session, cloud: SimulatedCloud, path: str, version: str = "2.69"):
    """GET on Nova at a microversion, without raising for HTTP errors."""
    headers = {"OpenStack-API-Version": f"compute {version}"}
    return sess.get(cloud.nova_url() + path, headers=headers, raise_exc=False, authenticated=True)


def ids(response) -> list[str]:
    return [s["id"] for s in response.json()["servers"]]


def statuses(response) -> list[str]:
    return [s.get("status", "") for s in response.json()["servers"]]


def test_by_id_in_a_down_cell_per_role_and_microversion(cloud: SimulatedCloud) -> None:
    theirs = cloud.add_server(project="beta", cell="cell2")
    deleted = cloud.add_server(project="beta", cell="cell2")
    cloud.delete_server(deleted.id)
    never = "3d0bd0a4-96a6-4d0e-bb6c-6a5c1d3ac6a5"
    cloud.set_cell_down("cell2")
    admin, member = password_session(cloud, "admin"), password_session(cloud, "member")
    reader_all = password_session(cloud, "reader-all")
    for server_id in (theirs.id, deleted.id):
        assert get(admin, cloud, f"/servers/{server_id}", "2.60").status_code == 500
        shown = get(admin, cloud, f"/servers/{server_id}")
        assert shown.status_code == 200
        record = shown.json()["server"]
        assert record["status"] == "UNKNOWN" and "name" not in record
        assert "OS-EXT-STS:vm_state" not in record
        assert record["OS-EXT-AZ:availability_zone"] == "UNKNOWN"
        assert get(reader_all, cloud, f"/servers/{server_id}").json()["server"]["status"] == (
            "UNKNOWN"
        )
        assert get(member, cloud, f"/servers/{server_id}").status_code == 403
    assert get(admin, cloud, f"/servers/{never}").status_code == 404
    cloud.set_cell_down("cell2", down=False)
    assert get(reader_all, cloud, f"/servers/{theirs.id}").status_code == 404
    assert get(member, cloud, f"/servers/{theirs.id}").status_code == 404
    assert get(admin, cloud, f"/servers/{deleted.id}").status_code == 404


def test_only_an_unfiltered_listing_shows_a_down_cell_first_and_only_one_page(
    cloud: SimulatedCloud,
) -> None:
    down = [cloud.add_server(project="beta", cell="cell2").id for _ in range(4)]
    up = [cloud.add_server(project="gamma").id for _ in range(2)]
    cloud.set_cell_down("cell2")
    admin = password_session(cloud, "admin")
    first = get(admin, cloud, "/servers/detail?all_tenants=1")
    assert statuses(first) == ["UNKNOWN"] * 3 and set(ids(first)) <= set(down)
    following = get(admin, cloud, first.json()["servers_links"][0]["href"].split("/v2.1", 1)[1])
    assert following.status_code == 500  # its marker is a server of the down cell
    for query in ("limit=10", f"changes-since={EPOCH}", "sort_key=created_at", "project_id=x"):
        skipped = get(admin, cloud, f"/servers/detail?all_tenants=1&{query}")
        assert skipped.status_code == 200 and not set(ids(skipped)) & set(down), query
    assert ids(get(admin, cloud, "/servers/detail?all_tenants=1&limit=10")) == up[::-1]
    assert ids(get(admin, cloud, f"/servers/detail?all_tenants=1&marker={up[1]}")) == [up[0]]
    assert ids(get(admin, cloud, "/servers/detail?all_tenants=1", "2.60")) == up[::-1]
    cloud.set_cell_down("cell2", down=False)
    first_page = ids(get(admin, cloud, "/servers/detail?all_tenants=1&limit=3"))
    rest = ids(get(admin, cloud, f"/servers/detail?all_tenants=1&limit=3&marker={first_page[-1]}"))
    assert set(first_page + rest) == {*down, *up}


def test_down_cell_listing_fills_the_page_after_its_unknown_records(cloud: SimulatedCloud) -> None:
    down = cloud.add_server(project="beta", cell="cell2").id
    up = [cloud.add_server(project="gamma").id for _ in range(3)]
    cloud.set_cell_down("cell2")
    page = get(password_session(cloud, "reader-all"), cloud, "/servers?all_tenants=1")
    assert ids(page) == [down, up[2], up[1]]
    assert statuses(page) == ["UNKNOWN", "", ""]


def test_not_skipping_down_cells_makes_skipping_listings_fail(cloud: SimulatedCloud) -> None:
    down = cloud.add_server(project="beta", cell="cell2").id
    cloud.add_server(project="gamma")
    cloud.set_cell_down("cell2")
    cloud.skip_down_cells(False)
    admin = password_session(cloud, "admin")
    assert get(admin, cloud, "/servers/detail?all_tenants=1&limit=2").status_code == 500
    assert get(admin, cloud, f"/servers/detail?changes-since={EPOCH}").status_code == 500
    unfiltered = get(admin, cloud, "/servers/detail?all_tenants=1")
    assert unfiltered.status_code == 200 and ids(unfiltered)[0] == down


def test_a_server_being_built(cloud: SimulatedCloud) -> None:
    new = cloud.add_server(project="beta", stage="unscheduled")
    reader_all, admin = password_session(cloud, "reader-all"), password_session(cloud, "admin")
    since = f"/servers/detail?all_tenants=1&changes-since={EPOCH}"
    shown = get(reader_all, cloud, f"/servers/{new.id}")
    assert shown.status_code == 200 and shown.json()["server"]["status"] == "BUILD"
    assert ids(get(admin, cloud, since)) == [new.id]  # build requests ignore changes-since
    cloud.advance_build(new.id)  # scheduled to its cell, not updated yet
    assert get(reader_all, cloud, f"/servers/{new.id}").status_code == 404
    assert get(admin, cloud, f"/servers/{new.id}").status_code == 200
    assert ids(get(reader_all, cloud, since)) == []
    assert ids(get(reader_all, cloud, "/servers/detail?all_tenants=1&limit=5")) == [new.id]
    cloud.advance_build(new.id)
    assert ids(get(reader_all, cloud, since)) == [new.id]
    assert cloud.server(new.id).status == "ACTIVE"
