"""The /check contract, row by row, with real keystoneauth1 + novaclient over requests-mock."""

from __future__ import annotations

import pytest
import requests
from falcon import testing

from instanceapi.http.app import create_app
from instanceapi.uuids import byte_swapped
from tests.fakes import PASSWORD, SETTINGS, FakeCloud, checker_for, client_for, new_uuid

STATES = [
    "ACTIVE",
    "BUILD",
    "SHUTOFF",
    "ERROR",
    "PAUSED",
    "SUSPENDED",
    "RESCUE",
    "SHELVED",
    "SHELVED_OFFLOADED",
    "SOFT_DELETED",
    "VERIFY_RESIZE",
    "MIGRATING",
]


@pytest.fixture
def cloud(requests_mock):
    return FakeCloud(requests_mock)


@pytest.mark.parametrize("status", STATES)
def test_every_state_but_deleted_exists(cloud, status):
    uuid = cloud.add(status)
    result = client_for(cloud).simulate_get(f"/check/{uuid}")
    assert result.status_code == 200
    assert result.headers["Instance-Exists"] == "true"
    assert result.json["exists"] is True
    assert result.json["status"] == status
    assert (result.json["cloud"], result.json["region"]) == ("cloud", "RegionOne")


def test_absent_is_404_with_marker(cloud):
    cloud.add()  # another server, ours: the cloud is not empty
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 404
    assert result.headers["Instance-Exists"] == "false"
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.json["exists"] is False
    assert result.json["targets"][0]["rule"] == "by-id"


def test_empty_cloud_is_not_an_outage(cloud):
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 404
    assert result.json["exists"] is False


def test_reported_deleted_is_absent(cloud, requests_mock):
    uuid = cloud.add()
    cloud.fail(
        rf".*/servers/{uuid}$",
        json={"server": {"id": uuid, "status": "DELETED", "OS-EXT-STS:vm_state": "deleted"}},
    )
    result = client_for(cloud).simulate_get(f"/check/{uuid}")
    assert result.status_code == 404
    assert result.json["targets"][0]["rule"] == "reported-deleted"


def test_unknown_status_is_500_with_null(cloud):
    uuid = cloud.add("UNKNOWN")
    result = client_for(cloud).simulate_get(f"/check/{uuid}")
    assert result.status_code == 500
    assert result.json["exists"] is None
    assert result.headers["Instance-Exists"] == "unknown"
    assert "cell is unreachable" in result.json["detail"]


@pytest.mark.parametrize(
    "form", [str.upper, lambda u: u.replace("-", ""), lambda u: f"  {u.upper().replace('-', '')}\t"]
)
def test_accepted_forms_are_normalised(cloud, form):
    uuid = cloud.add()
    result = client_for(cloud).simulate_get(f"/check/{form(uuid)}")
    assert result.status_code == 200
    assert result.json["uuid"] == uuid
    assert cloud.calls("GET", f"/servers/{uuid}") >= 1


def test_byte_swapped_form_matches(cloud):
    uuid = new_uuid()
    while True:  # a Nova id whose twin is also a v4 UUID is the harder case; any works
        uuid = new_uuid()
        if byte_swapped(uuid) != uuid:
            break
    cloud.add(server_id=uuid)
    result = client_for(cloud).simulate_get(f"/check/{byte_swapped(uuid).upper()}")
    assert result.status_code == 200
    assert result.json["matched"] == "byte-swapped"
    assert result.json["targets"][-1]["uuid"] == uuid


@pytest.mark.parametrize(
    "raw",
    [
        "not-a-uuid",
        "1234",
        "g" * 32,
        "{0e6b8a4c-4c87-4b6a-9b1e-6c3f9a1d2e3f}",
        "urn:uuid:0e6b8a4c-4c87-4b6a-9b1e-6c3f9a1d2e3f",
        "0e6b8a4c4c87-4b6a-9b1e-6c3f9a1d2e3f",
        "\u0660e6b8a4c-4c87-4b6a-9b1e-6c3f9a1d2e3f",
    ],
)  # Arabic-Indic zero
def test_malformed_is_400_and_asks_nobody(cloud, raw):
    result = client_for(cloud).simulate_get(f"/check/{raw}")
    assert result.status_code == 400
    assert "not a UUID" in result.json["description"]
    assert cloud.mocker.call_count == 0


@pytest.mark.parametrize(
    "path", ["/check", "/check/", "/check/%20", "/check/0e6b8a4c-4c87-4b6a-9b1e-6c3f9a1d2e3f/extra"]
)
def test_missing_or_extra_path_is_400_never_404(cloud, path):
    result = client_for(cloud).simulate_get(path)
    assert result.status_code == 400
    assert result.json["title"] == "Invalid UUID"


def test_trailing_slash_is_accepted(cloud):
    uuid = cloud.add()
    assert client_for(cloud).simulate_get(f"/check/{uuid}/").status_code == 200


def test_head_has_same_status_and_no_body(cloud):
    uuid = cloud.add()
    client = client_for(cloud)
    present = client.simulate_head(f"/check/{uuid}")
    absent = client.simulate_head(f"/check/{new_uuid()}")
    assert (present.status_code, absent.status_code) == (200, 404)
    assert absent.headers["Instance-Exists"] == "false"
    assert present.content == b"" and absent.content == b""
    assert client.simulate_head("/check/nope").status_code == 400


def test_text_plain_gets_one_sentence(cloud):
    uuid = cloud.add("SHUTOFF")
    result = client_for(cloud).simulate_get(f"/check/{uuid}", headers={"Accept": "text/plain"})
    assert result.headers["Content-Type"].startswith("text/plain")
    assert result.text == f"Instance {uuid} exists in cloud/RegionOne: SHUTOFF.\n"


def test_region_split_absent_plus_failing_is_500(requests_mock):
    one = FakeCloud(requests_mock, region="RegionOne")
    two = FakeCloud(requests_mock, region="RegionTwo")
    two.fail(r".*nova\.cloud-regiontwo.*/servers/", status_code=503)
    result = client_for(one, two).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert result.json["region"] == "RegionTwo"
    assert "HTTP 503" in result.json["detail"]


def test_region_split_present_plus_failing_is_200(requests_mock):
    one = FakeCloud(requests_mock, region="RegionOne")
    two = FakeCloud(requests_mock, region="RegionTwo")
    one.fail(r".*nova\.cloud-regionone.*/servers/", status_code=500)
    uuid = two.add()
    result = client_for(one, two).simulate_get(f"/check/{uuid}")
    assert result.status_code == 200
    assert result.json["region"] == "RegionTwo"


@pytest.mark.parametrize(
    "failure",
    [
        {"status_code": 401, "json": {"error": {"code": 401, "message": "bad"}}},
        {"status_code": 500, "text": "oops"},
        {"exc": requests.exceptions.ConnectionError},
        {"exc": requests.exceptions.ConnectTimeout},
    ],
)
def test_keystone_failures_are_500(cloud, failure):
    cloud.fail(r".*keystone.*/auth/tokens", **failure)
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert result.json["exists"] is None
    assert "cloud/RegionOne" in result.json["detail"]
    assert PASSWORD not in result.text


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        ({"exc": requests.exceptions.ReadTimeout}, "timed out"),
        ({"exc": requests.exceptions.ConnectionError}, "unreachable"),
        ({"status_code": 500, "json": {"computeFault": {"code": 500}}}, "HTTP 500"),
        ({"status_code": 503, "text": "busy"}, "HTTP 503"),
        ({"status_code": 200, "text": "<html>not json</html>"}, "unexpected answer"),
        (
            {"status_code": 200, "json": {"server": {"id": "someone-else", "status": "ACTIVE"}}},
            "unexpected body",
        ),
        ({"status_code": 403, "json": {"forbidden": {"code": 403}}}, "HTTP 403"),
    ],
)
def test_nova_failures_are_500(cloud, failure, said):
    cloud.fail(r".*nova.*/servers/[0-9a-f-]{36}$", **failure)
    result = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert said in result.json["detail"]


def test_503_is_retried_within_bound(cloud):
    uuid = cloud.add()
    ok = {"status_code": 200, "json": {"server": cloud.servers[uuid]}}
    cloud.fail(rf".*/servers/{uuid}$", [{"status_code": 503, "text": "busy"}, ok])
    checker = checker_for(cloud, retries=2)
    result = testing.TestClient(create_app(SETTINGS, checker=checker)).simulate_get(
        f"/check/{uuid}"
    )
    assert result.status_code == 200
    assert cloud.calls("GET", f"/servers/{uuid}") == 2


def test_a_thousand_checks_cost_one_token(cloud):
    uuid = cloud.add()
    client = client_for(cloud)
    for _ in range(1000):
        assert client.simulate_get(f"/check/{uuid}").status_code == 200
    assert cloud.calls("POST", "/auth/tokens") == 1


def test_revoked_token_is_renewed_transparently(cloud):
    uuid = cloud.add()
    client = client_for(cloud)
    assert client.simulate_get(f"/check/{uuid}").status_code == 200
    cloud.fail(
        rf".*/servers/{uuid}$",
        [
            {"status_code": 401, "json": {"error": {"code": 401}}},
            {"status_code": 200, "json": {"server": cloud.servers[uuid]}},
        ],
    )
    assert client.simulate_get(f"/check/{uuid}").status_code == 200
    assert cloud.calls("POST", "/auth/tokens") == 2


def test_expiring_token_is_renewed_before_use(requests_mock):
    import datetime as dt

    cloud = FakeCloud(requests_mock, token_lifetime=dt.timedelta(seconds=60))
    uuid = cloud.add()
    client = client_for(cloud)
    for _ in range(3):
        assert client.simulate_get(f"/check/{uuid}").status_code == 200
    # keystoneauth renews a token that expires within 120 s before each use.
    assert cloud.calls("POST", "/auth/tokens") >= 3


@pytest.mark.parametrize(
    "answer",
    [
        {"status_code": 404, "text": "<html><body>404 Not Found</body></html>"},
        {"status_code": 404, "json": {"error": {"code": 404, "message": "Not Found"}}},
        {
            "status_code": 404,
            "json": {"itemNotFound": {"code": 404, "message": "Flavor 1 could not be found."}},
        },
        {"status_code": 404, "text": ""},
    ],
)
def test_a_404_that_is_not_novas_instance_not_found_is_500(cloud, answer):
    """A wrong endpoint path or a proxy's 404 says nothing about the instance."""
    cloud.add(project_id="0" * 32)  # visibility is proven: by-id 404s would count
    client = client_for(cloud)
    assert client.simulate_get(f"/check/{new_uuid()}").status_code == 404
    cloud.fail(r".*nova.*/servers/[0-9a-f-]{36}$", **answer)
    result = client.simulate_get(f"/check/{new_uuid()}")
    assert result.status_code == 500
    assert "without Nova's itemNotFound body" in result.json["detail"]
