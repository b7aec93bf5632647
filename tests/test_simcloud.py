"""The simulated cloud, driven by the real keystoneauth1 and python-novaclient over loopback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from keystoneauth1 import session
from keystoneauth1.identity import generic
from novaclient import exceptions as nova_exc

from instanceapi.testing import SimulatedCloud
from instanceapi.testing.clients import app_credential_session, nova, password_session

V269 = {"OpenStack-API-Version": "compute 2.69"}


@pytest.fixture
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud(regions=("RegionOne", "RegionTwo")) as running:
        yield running


def raw_get(sess: session.Session, cloud: SimulatedCloud, path: str, **headers: str):
    """GET on Nova without raising for HTTP errors."""
    return sess.get(
        cloud.nova_url() + path, headers={**V269, **headers}, raise_exc=False, authenticated=True
    )


# -- Keystone ----------------------------------------------------------------


def test_password_token_has_project_roles_and_catalog(cloud: SimulatedCloud) -> None:
    sess = password_session(cloud, "admin")
    access = sess.auth.get_access(sess)
    assert access.project_name == "admin"
    assert access.project_id == cloud.project_id("admin")
    assert {"admin", "member", "reader"} <= set(access.role_names)
    assert access.expires > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)
    assert access.service_catalog.url_for(service_type="compute", region_name="RegionTwo") == (
        cloud.nova_url("RegionTwo")
    )
    assert access.service_catalog.url_for(service_type="identity") == cloud.auth_url


def test_token_response_shape(cloud: SimulatedCloud) -> None:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "reader",
                        "domain": {"name": "Default"},
                        "password": "reader-secret",
                    }
                },
            },
            "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}},
        }
    }
    resp = session.Session().post(cloud.auth_url + "/auth/tokens", json=body)
    assert resp.status_code == 201
    assert resp.headers["X-Subject-Token"]
    token = resp.json()["token"]
    assert token["methods"] == ["password"]
    assert token["user"]["name"] == "reader"
    assert token["project"] == {
        "id": cloud.project_id("alpha"),
        "name": "alpha",
        "domain": {"id": "default", "name": "Default"},
    }
    assert [r["name"] for r in token["roles"]] == ["reader"]
    assert token["is_domain"] is False
    assert token["expires_at"].endswith("Z") and len(token["expires_at"]) == 27
    assert {s["type"] for s in token["catalog"]} == {"identity", "compute"}
    compute = next(s for s in token["catalog"] if s["type"] == "compute")
    assert {(e["region_id"], e["interface"]) for e in compute["endpoints"]} == {
        (r, i) for r in ("RegionOne", "RegionTwo") for i in ("public", "internal", "admin")
    }
    assert "reader-secret" not in resp.text


def test_wrong_password_and_unknown_user_are_401(cloud: SimulatedCloud) -> None:
    for user, password in (("admin", "nope"), ("nobody", "admin-secret")):
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "domain": {"id": "default"}, "password": password}
                    },
                }
            }
        }
        resp = session.Session().post(cloud.auth_url + "/auth/tokens", json=body, raise_exc=False)
        assert resp.status_code == 401
        assert resp.json() == {
            "error": {
                "code": 401,
                "message": "The request you have made requires authentication.",
                "title": "Unauthorized",
            }
        }
        assert password not in resp.text


def test_malformed_auth_body_is_400(cloud: SimulatedCloud) -> None:
    url = cloud.auth_url + "/auth/tokens"
    for body in ({"auth": {"identity": {"methods": ["password"], "password": "x"}}}, {"x": 1}):
        assert session.Session().post(url, json=body, raise_exc=False).status_code == 400


@pytest.mark.parametrize("suffix", ["/v3", ""])
def test_generic_password_plugin_discovers_with_and_without_v3(
    cloud: SimulatedCloud, suffix: str
) -> None:
    auth_url = cloud.auth_url.removesuffix("/v3") + suffix
    auth = generic.Password(
        auth_url=auth_url,
        username="member",
        password="member-secret",
        project_name="alpha",
        user_domain_name="Default",
        project_domain_name="Default",
    )
    sess = session.Session(auth=auth, timeout=5)
    assert sess.get_project_id() == cloud.project_id("alpha")
    assert cloud.counts["keystone.discovery"] >= 1
    assert cloud.counts["keystone.token"] == 1


def test_application_credential_carries_only_its_roles(cloud: SimulatedCloud) -> None:
    cred = cloud.add_application_credential("admin", "s3cret", roles=["reader"])
    sess = app_credential_session(cloud, cred, "s3cret")
    access = sess.auth.get_access(sess)
    assert set(access.role_names) == {"reader"}
    assert access.project_id == cloud.project_id("admin")
    other = cloud.add_server(project="beta")
    # Not admin any more: another project's server is 404.
    with pytest.raises(nova_exc.NotFound):
        nova(sess).servers.get(other.id)


def test_application_credential_access_rules(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="admin")
    rules = [{"service": "compute", "method": "GET", "path": "/v2.1/servers/*"}]
    cred = cloud.add_application_credential("admin", "s3cret", access_rules=rules)
    sess = app_credential_session(cloud, cred, "s3cret")
    assert sess.auth.get_access(sess)._data["token"]["application_credential"]["access_rules"]
    client = nova(sess)
    assert client.servers.get(server.id).id == server.id
    # /v2.1/servers/detail matches "*" too; /v2.1/servers does not.
    assert raw_get(sess, cloud, "/servers/detail").status_code == 200
    assert raw_get(sess, cloud, "/servers").status_code == 401
    assert raw_get(sess, cloud, "/flavors/1/os-extra_specs").status_code == 401


def test_bad_application_credential_secret_is_401(cloud: SimulatedCloud) -> None:
    cred = cloud.add_application_credential("member", "right")
    sess = app_credential_session(cloud, cred, "wrong")
    with pytest.raises(Exception, match="401"):
        sess.get_token()


# -- Nova: show ----------------------------------------------------------------


def test_show_existing_missing_and_malformed(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha", status="SHUTOFF", name="db")
    client = nova(password_session(cloud, "member"))
    got = client.servers.get(server.id)
    assert (got.id, got.name, got.status) == (server.id, "db", "SHUTOFF")
    assert got.tenant_id == cloud.project_id("alpha")
    assert getattr(got, "OS-EXT-STS:vm_state") == "stopped"
    for missing in ("9e8b6a10-1c3e-4bd2-9c5a-1a2b3c4d5e6f", "not-a-uuid"):
        with pytest.raises(nova_exc.NotFound) as info:
            client.servers.get(missing)
        assert f"Instance {missing} could not be found." in str(info.value)


def test_show_404_body_is_nova_shaped(cloud: SimulatedCloud) -> None:
    resp = raw_get(password_session(cloud, "member"), cloud, "/servers/nope")
    assert resp.status_code == 404
    assert resp.json() == {
        "itemNotFound": {"code": 404, "message": "Instance nope could not be found."}
    }


@pytest.mark.parametrize("user", ["member", "reader", "reader-all"])
def test_other_projects_server_is_404_for_non_admin(cloud: SimulatedCloud, user: str) -> None:
    other = cloud.add_server(project="beta")
    with pytest.raises(nova_exc.NotFound):
        nova(password_session(cloud, user)).servers.get(other.id)
    assert nova(password_session(cloud, "admin")).servers.get(other.id).id == other.id


def test_admin_sees_extended_attributes_others_do_not(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha", status="SHELVED_OFFLOADED")
    admin = raw_get(password_session(cloud), cloud, f"/servers/{server.id}").json()["server"]
    member = raw_get(password_session(cloud, "member"), cloud, f"/servers/{server.id}")
    assert admin["OS-EXT-SRV-ATTR:host"] is None
    assert admin["OS-EXT-STS:vm_state"] == "shelved_offloaded"
    assert "OS-EXT-SRV-ATTR:host" not in member.json()["server"]


def test_deleted_is_404_even_for_admin_and_soft_deleted_is_200(cloud: SimulatedCloud) -> None:
    gone = cloud.add_server(project="alpha")
    soft = cloud.add_server(project="alpha")
    cloud.delete_server(gone.id)
    cloud.soft_delete_server(soft.id)
    admin = nova(password_session(cloud))
    with pytest.raises(nova_exc.NotFound):
        admin.servers.get(gone.id)
    member = nova(password_session(cloud, "member"))
    assert member.servers.get(soft.id).status == "SOFT_DELETED"
    listed = {s.id for s in member.servers.list()}
    assert gone.id not in listed and soft.id not in listed


def test_begin_delete_still_answers_with_task_state_deleting(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha")
    cloud.begin_delete(server.id)
    got = nova(password_session(cloud, "member")).servers.get(server.id)
    assert getattr(got, "OS-EXT-STS:task_state") == "deleting"


def test_regions_are_separate(cloud: SimulatedCloud) -> None:
    two = cloud.add_server(project="alpha", region="RegionTwo")
    sess = password_session(cloud, "member")
    assert nova(sess, region="RegionTwo").servers.get(two.id).id == two.id
    with pytest.raises(nova_exc.NotFound):
        nova(sess, region="RegionOne").servers.get(two.id)
    assert cloud.counts["nova.show@RegionTwo"] == 1
    assert cloud.counts["nova.show@RegionOne"] == 1
    assert cloud.counts["nova.show"] == 2


# -- Nova: microversions --------------------------------------------------------


def test_microversion_negotiation_and_echo(cloud: SimulatedCloud) -> None:
    sess = password_session(cloud, "member")
    resp = raw_get(sess, cloud, "/servers")
    assert resp.headers["OpenStack-API-Version"] == "compute 2.69"
    assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.69"
    assert "OpenStack-API-Version" in resp.headers["Vary"]
    latest = raw_get(sess, cloud, "/servers", **{"OpenStack-API-Version": "compute latest"})
    assert latest.headers["X-OpenStack-Nova-API-Version"] == "2.96"
    plain = sess.get(cloud.nova_url() + "/servers", raise_exc=False)
    assert plain.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    too_new = raw_get(sess, cloud, "/servers", **{"OpenStack-API-Version": "compute 2.97"})
    assert too_new.status_code == 406
    bad = raw_get(sess, cloud, "/servers", **{"OpenStack-API-Version": "compute two"})
    assert bad.status_code == 400
    cloud.set_max_microversion("2.60")
    assert raw_get(sess, cloud, "/servers").status_code == 406
    doc = session.Session().get(cloud.nova_url()).json()["version"]
    assert (doc["id"], doc["version"], doc["min_version"]) == ("v2.1", "2.60", "2.1")


def test_nova_discovery_needs_no_token(cloud: SimulatedCloud) -> None:
    root = cloud.nova_url().removesuffix("/v2.1")
    plain = session.Session()
    assert plain.get(root + "/").json()["versions"][0]["status"] == "CURRENT"
    assert plain.get(cloud.nova_url() + "/").json()["version"]["version"] == "2.96"
    assert plain.get(cloud.nova_url() + "/servers", raise_exc=False).status_code == 401
    assert cloud.counts["nova.discovery"] == 2


# -- Nova: listings ---------------------------------------------------------------


def test_member_lists_own_project_only_and_all_tenants_is_403(cloud: SimulatedCloud) -> None:
    mine = cloud.add_server(project="alpha")
    cloud.add_server(project="beta")
    client = nova(password_session(cloud, "member"))
    assert [s.id for s in client.servers.list()] == [mine.id]
    with pytest.raises(nova_exc.Forbidden) as info:
        client.servers.list(search_opts={"all_tenants": 1})
    assert "os_compute_api:servers:detail:get_all_tenants" in str(info.value)


def test_reader_all_lists_every_project_but_cannot_show_others(cloud: SimulatedCloud) -> None:
    ids = {cloud.add_server(project=p).id for p in ("alpha", "beta", "gamma")}
    other = cloud.add_server(project="beta")
    client = nova(password_session(cloud, "reader-all"))
    listed = {s.id for s in client.servers.list(search_opts={"all_tenants": 1})}
    assert listed == ids | {other.id}
    with pytest.raises(nova_exc.NotFound):
        client.servers.get(other.id)
    beta = client.servers.list(search_opts={"all_tenants": 1, "project_id": other.project_id})
    assert {s.tenant_id for s in beta} == {other.project_id}


def test_uuid_and_deleted_filters_are_admin_only(cloud: SimulatedCloud) -> None:
    a, b = cloud.add_server(project="alpha"), cloud.add_server(project="alpha")
    gone = cloud.add_server(project="alpha")
    cloud.delete_server(gone.id)
    member = nova(password_session(cloud, "member"))
    assert {s.id for s in member.servers.list(search_opts={"uuid": a.id})} == {a.id, b.id}
    assert {s.id for s in member.servers.list(search_opts={"deleted": True})} == {a.id, b.id}
    admin = nova(password_session(cloud))
    opts = {"all_tenants": 1, "uuid": a.id}
    assert [s.id for s in admin.servers.list(search_opts=opts)] == [a.id]
    deleted = admin.servers.list(search_opts={"all_tenants": 1, "deleted": True})
    assert [(s.id, s.status) for s in deleted] == [(gone.id, "DELETED")]


def test_order_is_newest_first(cloud: SimulatedCloud) -> None:
    ids = [cloud.add_server(project="alpha").id for _ in range(5)]
    listed = nova(password_session(cloud, "member")).servers.list()
    assert [s.id for s in listed] == ids[::-1]


def test_pagination_over_max_limit_with_novaclient() -> None:
    with SimulatedCloud(max_limit=50) as cloud:
        ids = set(cloud.populate(120))
        admin = nova(password_session(cloud))
        everything = admin.servers.list(search_opts={"all_tenants": 1}, limit=-1)
        assert len(everything) == 120 and {s.id for s in everything} == ids
        # 50 + 50 + 20 + an empty page that ends novaclient's loop
        assert cloud.counts["nova.list"] == 4
        first_page = admin.servers.list(search_opts={"all_tenants": 1})
        assert len(first_page) == 50  # no limit: only the first page


def test_page_links_limit_and_marker_errors(cloud: SimulatedCloud) -> None:
    ids = [cloud.add_server(project="alpha").id for _ in range(3)][::-1]
    sess = password_session(cloud, "member")
    page = raw_get(sess, cloud, "/servers?limit=2").json()
    assert [s["id"] for s in page["servers"]] == ids[:2]
    (link,) = page["servers_links"]
    assert (
        link["rel"] == "next" and f"marker={ids[1]}" in link["href"] and "limit=2" in link["href"]
    )
    rest = sess.get(link["href"], headers=V269).json()
    assert [s["id"] for s in rest["servers"]] == ids[2:] and "servers_links" not in rest
    assert raw_get(sess, cloud, "/servers?limit=-1").status_code == 400
    assert raw_get(sess, cloud, "/servers?limit=abc").status_code == 400
    unknown = raw_get(sess, cloud, "/servers?marker=nope")
    assert unknown.status_code == 400
    assert unknown.json() == {"badRequest": {"code": 400, "message": "marker [nope] not found"}}
    cloud.delete_server(ids[0])
    after_deleted = raw_get(sess, cloud, f"/servers?marker={ids[0]}").json()
    assert [s["id"] for s in after_deleted["servers"]] == ids[1:]


def test_changes_since_returns_deleted_and_soft_deleted(cloud: SimulatedCloud) -> None:
    old = cloud.add_server(project="alpha")
    since = dt.datetime.now(dt.UTC)
    gone = cloud.add_server(project="alpha")
    soft = cloud.add_server(project="alpha")
    cloud.delete_server(gone.id)
    cloud.soft_delete_server(soft.id)
    admin = nova(password_session(cloud))
    opts = {"all_tenants": 1, "changes-since": since.isoformat()}
    found = {s.id: s for s in admin.servers.list(search_opts=opts)}
    assert set(found) == {gone.id, soft.id}
    assert found[gone.id].status == "DELETED"
    assert getattr(found[gone.id], "OS-EXT-STS:vm_state") == "deleted"
    assert getattr(found[gone.id], "OS-SRV-USG:terminated_at")
    assert found[soft.id].status == "SOFT_DELETED"
    brief = admin.servers.list(detailed=False, search_opts=opts)
    assert all(set(s.to_dict()) == {"id", "links", "name"} for s in brief)
    # inclusive: the deletion instant itself still matches
    stamp = cloud.server(gone.id).updated_at.isoformat()
    sess = password_session(cloud, "member")
    exact = raw_get(sess, cloud, f"/servers?changes-since={stamp.replace('+', '%2B')}")
    assert gone.id in {s["id"] for s in exact.json()["servers"]}
    assert old.id not in found
    assert raw_get(sess, cloud, "/servers?changes-since=yesterday").status_code == 400


def test_purge_deleted_forgets_records(cloud: SimulatedCloud) -> None:
    gone = cloud.add_server(project="alpha")
    cloud.delete_server(gone.id)
    assert cloud.purge_deleted() == 1
    listed = nova(password_session(cloud)).servers.list(
        search_opts={"all_tenants": 1, "changes-since": "2000-01-01T00:00:00Z"}
    )
    assert listed == []
    with pytest.raises(ValueError, match="never reuses"):
        cloud.add_server(project="alpha", server_id=gone.id)


def test_status_filter_and_updated_at_bumps(cloud: SimulatedCloud) -> None:
    server = cloud.add_server(project="alpha")
    before = cloud.server(server.id).updated_at
    after = cloud.set_status(server.id, "PAUSED").updated_at
    assert after > before
    client = nova(password_session(cloud, "member"))
    assert [s.id for s in client.servers.list(search_opts={"status": "PAUSED"})] == [server.id]
    assert client.servers.list(search_opts={"status": "ACTIVE"}) == []
    assert client.servers.list(search_opts={"status": "NOT-A-STATUS"}) == []


def test_down_cell_by_microversion(cloud: SimulatedCloud) -> None:
    up = cloud.add_server(project="alpha")
    down = cloud.add_server(project="alpha", cell="cell2")
    cloud.set_cell_down("cell2")
    sess = password_session(cloud, "member")
    new, old = nova(sess, "2.69"), nova(sess, "2.60")
    shown = new.servers.get(down.id)
    assert shown.status == "UNKNOWN" and not hasattr(shown, "name")
    listed = {s.id: s.status for s in new.servers.list()}
    assert listed == {up.id: "ACTIVE", down.id: "UNKNOWN"}
    brief = raw_get(sess, cloud, "/servers").json()["servers"]
    assert {"id": down.id, "status": "UNKNOWN"}.items() <= next(
        s for s in brief if s["id"] == down.id
    ).items()
    assert [s.id for s in old.servers.list()] == [up.id]
    with pytest.raises(nova_exc.ClientException) as info:
        old.servers.get(down.id)
    assert info.value.code == 500
    cloud.set_cell_down("cell2", down=False)
    assert old.servers.get(down.id).status == "ACTIVE"
