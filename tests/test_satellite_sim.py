"""The simulated Satellite behaves like Foreman 3.9-3.12 / Katello 4.11-4.17 in every point
of the shared facts ("Foreman / Katello API"), checked over loopback HTTP."""

from __future__ import annotations

import pytest
import requests

from instanceapi.testing.satellite import SimulatedSatellite

UUID = "5a1c54a2-1b7e-4c55-9a53-3c0d2a1e9{:03d}"


@pytest.fixture(scope="module")
def sat():
    with SimulatedSatellite() as sim:
        for n in range(30):  # each host: virt::uuid and a product name, so 60 fact rows
            sim.add_guest(f"h{29 - n:02d}.example.com", UUID.format(n))
        sim.add_user("viewer", "pw", {"view_hosts", "view_facts"})
        sim.add_user("token-user", "pw", None, tokens={"pat-1"})
        yield sim


def get(sat, path, auth=None, **params):
    resp = requests.get(sat.url + path, params=params, auth=auth or (sat.user, sat.password),
                        timeout=5)  # fmt: skip
    return resp


def test_fact_values_pages_count_rows_and_subtotal_counts_hosts(sat):
    body = get(sat, "/api/v2/fact_values", per_page=7, order="host_id asc").json()
    assert sum(len(f) for f in body["results"].values()) == 7
    assert body["subtotal"] == len(body["results"]) == 4  # 7 rows of 4 hosts
    assert set(body) >= {"total", "subtotal", "page", "per_page", "search", "sort", "results"}
    last = get(sat, "/api/v2/fact_values", per_page=7, page=9, order="host_id asc").json()
    assert sum(len(f) for f in last["results"].values()) == 4
    assert get(sat, "/api/v2/fact_values", per_page=7, page=10).json()["results"] == {}


def test_fact_values_per_page_all_is_limit_0_and_per_page_is_not_capped(sat):
    assert get(sat, "/api/v2/fact_values", per_page="all").json()["results"] == {}
    body = get(sat, "/api/v2/fact_values", per_page=5000).json()
    assert sum(len(f) for f in body["results"].values()) == 60
    assert get(sat, "/api/v2/fact_values").json()["per_page"] == 20  # entries_per_page


def test_fact_values_order_by_value_by_default_or_by_host_id(sat):
    search = {"search": "fact = virt::uuid", "per_page": 3}
    by_value = get(sat, "/api/v2/fact_values", **search).json()["results"]
    assert [v["virt::uuid"] for v in by_value.values()] == [UUID.format(n) for n in range(3)]
    by_id = get(sat, "/api/v2/fact_values", order="host_id asc", **search).json()["results"]
    assert list(by_id) == ["h29.example.com", "h28.example.com", "h27.example.com"]
    one = get(sat, "/api/v2/fact_values", search="host = 5 and fact = virt::uuid").json()
    assert one["results"] == {"h25.example.com": {"virt::uuid": UUID.format(4)}}


def test_hosts_index_fields_envelope_order_and_thin(sat):
    body = get(sat, "/api/v2/hosts", per_page=2).json()
    assert [h["name"] for h in body["results"]] == ["h00.example.com", "h01.example.com"]
    host = body["results"][0]
    for key in ("compute_resource_id", "compute_resource_name", "organization_id",
                "organization_name", "location_id", "location_name", "hostgroup_id",
                "hostgroup_name", "hostgroup_title"):  # fmt: skip
        assert key in host
    assert set(host["subscription_facet_attributes"]) == {"uuid", "registered_at", "last_checkin"}
    assert body["sort"] == {"by": None, "order": None} and body["subtotal"] == 30
    by_id = get(sat, "/api/v2/hosts", per_page=2, order="id asc").json()["results"]
    assert [h["id"] for h in by_id] == [1, 2]
    thin = get(sat, "/api/v2/hosts", per_page=2, order="id asc", thin="true").json()["results"]
    assert thin == [{"id": 30, "name": "h00.example.com"}, {"id": 29, "name": "h01.example.com"}]


def test_parameters_follow_view_params_and_hidden_values_are_masked(sat):
    host = sat.host("h03.example.com")
    host.parameters["instanceapi_protect"] = "true"
    host.inherited_parameters["site"] = "paris"
    sat.global_parameters["ntp"] = "pool"
    host.hidden.add("site")
    admin = get(sat, f"/api/v2/hosts/{host.id}").json()
    assert {p["name"]: p["value"] for p in admin["all_parameters"]} == {
        "ntp": "pool", "site": "*****", "instanceapi_protect": "true",
    }  # fmt: skip
    shown = get(sat, f"/api/v2/hosts/{host.id}", show_hidden_parameters="true").json()
    assert {p["name"]: p["value"] for p in shown["all_parameters"]}["site"] == "paris"
    viewer = get(sat, f"/api/v2/hosts/{host.id}", auth=("viewer", "pw")).json()
    assert viewer["parameters"] == []
    assert [p["name"] for p in viewer["all_parameters"]] == ["ntp"]  # global ones only
    denied = get(sat, f"/api/v2/hosts/{host.id}/parameters", auth=("viewer", "pw"))
    assert denied.status_code == 403 and "view_params" in denied.json()["error"]["details"]
    # A search on a parameter does not ask view_params (Foreman's search_by_params).
    found = get(sat, "/api/v2/hosts", auth=("viewer", "pw"),
                search="params.instanceapi_protect = true").json()  # fmt: skip
    assert [h["name"] for h in found["results"]] == ["h03.example.com"]


def test_katello_delete_answers_200_even_when_the_record_survives(sat):
    host = sat.add_guest("sticky.example.com", UUID.format(900))
    sat.fail_delete("sticky.example.com")
    resp = requests.delete(f"{sat.url}/api/v2/hosts/{host.id}", auth=(sat.user, sat.password),
                           timeout=5)  # fmt: skip
    assert resp.status_code == 200
    after = get(sat, f"/api/v2/hosts/{host.id}")
    assert after.status_code == 200 and after.json()["subscription_facet_attributes"] is None


def test_reregistration_takes_over_the_same_id_and_name(sat):
    host = sat.add_guest("again.example.com", UUID.format(901))
    before = get(sat, f"/api/v2/hosts/{host.id}").json()["subscription_facet_attributes"]
    sat.reregister("again.example.com", UUID.format(902))
    after = get(sat, f"/api/v2/hosts/{host.id}").json()
    assert after["name"] == "again.example.com"
    assert after["subscription_facet_attributes"]["uuid"] != before["uuid"]
    facts = get(sat, "/api/v2/fact_values", search=f"host = {host.id} and fact = virt::uuid")
    assert facts.json()["results"] == {"again.example.com": {"virt::uuid": UUID.format(902)}}


def test_basic_auth_with_a_password_or_a_token_and_no_bearer(sat):
    assert get(sat, "/api/v2/hosts", auth=("token-user", "pw")).status_code == 200
    assert get(sat, "/api/v2/hosts", auth=("token-user", "pat-1")).status_code == 200
    bearer = requests.get(f"{sat.url}/api/v2/hosts", headers={"Authorization": "Bearer pat-1"},
                          timeout=5)  # fmt: skip
    assert bearer.status_code == 401
    assert get(sat, "/api/v2/hosts", auth=("token-user", "nope")).status_code == 401
    no_facts = get(sat, "/api/v2/fact_values", auth=("viewer", "pw"))
    assert no_facts.status_code == 200
    sat.add_user("hosts-only", "pw", {"view_hosts"})
    assert get(sat, "/api/v2/fact_values", auth=("hosts-only", "pw")).status_code == 403
