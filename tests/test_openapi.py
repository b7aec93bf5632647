"""The OpenAPI description: valid, served, and true of the running service.

The document (instanceapi/http/openapi.json) is checked three ways: it is a valid
OpenAPI 3.1 document; hand-picked live answers (every status of every route,
including the 500 of a faulted cloud) conform to it; and schemathesis fuzzes
the real service under Gunicorn, with the simulated cloud healthy, from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from instanceapi.http.openapi import load_document, read_document
from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceProcess, service_env
from tests.fakes import new_uuid

DOCUMENT = load_document()
HEX = frozenset("0123456789abcdefABCDEF")
#: Bounded fuzzing: examples per operation and generation mode.
MAX_EXAMPLES = 100


def is_uuid_text(raw: str) -> bool:
    """Return True if the contract accepts `raw` (an oracle written apart from uuids.py).

    8-4-4-4-12 or 32 hex digits, any case, surrounding whitespace (str.isspace) ignored.
    """
    text = raw.strip()
    if len(text) == 32:
        return all(c in HEX for c in text)
    if len(text) != 36:
        return False
    return all((c == "-") if i in (8, 13, 18, 23) else (c in HEX) for i, c in enumerate(text))


# -- the running service ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud(regions=("RegionOne", "RegionTwo")) as cloud:
        yield cloud


@pytest.fixture(scope="module")
def demo(cloud: SimulatedCloud) -> dict[str, list[str]]:
    return seed_demo(cloud)


@pytest.fixture(scope="module")
def service(cloud, demo, tmp_path_factory) -> Iterator[ServiceProcess]:
    env = service_env(cloud, tmp_path_factory.mktemp("oa"))
    with ServiceProcess(env, workers=1, ready_path="/readyz") as service:
        yield service


@pytest.fixture(autouse=True)
def _healthy(cloud: SimulatedCloud) -> Iterator[None]:
    cloud.clear_faults()
    yield
    cloud.clear_faults()


# -- the document itself -------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1.")


def test_document_ships_in_the_package_and_is_declared_as_package_data() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert re.search(r'"instanceapi\.http" = \[[^]]*"openapi\.json"', pyproject.read_text())
    assert read_document().startswith(b"{")


def test_every_route_is_described() -> None:
    described = {
        (path, method.upper())
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert described >= {
        ("/check/{uuid}", "GET"),
        ("/check/{uuid}", "HEAD"),
        ("/check", "GET"),
        ("/check", "HEAD"),
        ("/check", "POST"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
        ("/openapi.json", "GET"),
    }


def test_the_404_answer_requires_the_absence_marker() -> None:
    responses = DOCUMENT["paths"]["/check/{uuid}"]["get"]["responses"]
    marker = responses["404"]["headers"]["Instance-Exists"]
    assert marker["required"] is True
    assert marker["schema"]["enum"] == ["false"]
    assert responses["500"]["headers"]["Instance-Exists"]["schema"]["enum"] == ["unknown"]


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        ("efe39f40-f70d-4e3c-98c9-550b7baff3a3", True),
        ("EFE39F40F70D4E3C98C9550B7BAFF3A3", True),
        (" efe39f40-f70d-4e3c-98c9-550b7baff3a3\t", True),
        ("{efe39f40-f70d-4e3c-98c9-550b7baff3a3}", False),
        ("urn:uuid:efe39f40-f70d-4e3c-98c9-550b7baff3a3", False),
        ("efe39f40f70d-4e3c-98c9-550b7baff3a3", False),
        ("efe39f40-f70d-4e3c-98c9-550b7baff3a", False),
    ],
)
def test_the_documented_pattern_is_the_contract(raw: str, accepted: bool) -> None:
    param = DOCUMENT["paths"]["/check/{uuid}"]["parameters"][0]
    assert bool(re.fullmatch(param["schema"]["pattern"], raw)) is accepted
    assert is_uuid_text(raw) is accepted


# -- live answers conform ---------------------------------------------------------------

SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)


def conforms(method: str, template: str, response: requests.Response) -> None:
    """Assert that `response` is described by the operation: status, headers, media type, body."""
    operation = SCHEMA[template][method]
    described = operation.definition.raw["responses"]
    status = str(response.status_code)
    assert status in described, f"{method} {template}: {status} is not described"
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", response.headers["X-Request-ID"])
    for name, header in described[status].get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{method} {template} {status}: no {name} header"
            allowed = header["schema"].get("enum")
            if allowed:
                assert response.headers[name] in allowed
    if method != "HEAD" and response.content:
        media = response.headers["Content-Type"].split(";")[0].strip()
        assert {k.split(";")[0] for k in described[status].get("content", {})} >= {media}
        operation.validate_response(response)


def test_live_answers_of_the_check_route_conform(service, demo) -> None:
    url = service.url
    cases = [
        ("GET", f"/check/{demo['existing'][0]}", {}, 200),
        ("GET", f"/check/{demo['existing'][0].upper().replace('-', '')}", {}, 200),
        ("GET", f"/check/{demo['deleted'][0]}", {}, 404),
        ("GET", f"/check/{new_uuid()}", {}, 404),
        ("GET", "/check/not-a-uuid", {}, 400),
        ("GET", "/check/not-a-uuid", {"Accept": "text/plain"}, 400),
        ("GET", f"/check/{demo['existing'][0]}", {"Accept": "text/plain"}, 200),
        ("HEAD", f"/check/{demo['deleted'][0]}", {}, 404),
        ("HEAD", "/check/x", {}, 400),
    ]
    for method, path, headers, expected in cases:
        response = requests.request(method, url + path, headers=headers, timeout=30)
        assert response.status_code == expected, (method, path)
        conforms(method, "/check/{uuid}", response)


def test_the_500_of_a_faulted_cloud_conforms(service, cloud) -> None:
    cloud.fault("nova", region="RegionTwo", status=500)
    response = requests.get(f"{service.url}/check/{new_uuid()}", timeout=30)
    assert response.status_code == 500
    assert response.headers["Instance-Exists"] == "unknown"
    conforms("GET", "/check/{uuid}", response)


def test_live_answers_of_the_other_routes_conform(service, demo) -> None:
    url = service.url
    for method, template in (("GET", "/check"), ("HEAD", "/check")):
        for path in ("/check", "/check/"):
            response = requests.request(method, url + path, timeout=30)
            assert response.status_code == 400
            conforms(method, template, response)
    bulk = [
        ({"json": {"uuids": [demo["existing"][0], demo["deleted"][0], "nope", 7]}}, 200),
        ({"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": {"uuids": "x"}}, 400),
        ({"data": b"x", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"json": {"uuids": [new_uuid() for _ in range(1001)]}}, 413),
    ]
    for kwargs, expected in bulk:
        response = requests.post(url + "/check", timeout=60, **kwargs)
        assert response.status_code == expected, kwargs
        conforms("POST", "/check", response)
    for template in ("/healthz", "/readyz", "/openapi.json"):
        response = requests.get(url + template, timeout=30)
        assert response.status_code == 200
        conforms("GET", template, response)


def test_the_served_document_is_the_packaged_one(service) -> None:
    response = requests.get(f"{service.url}/openapi.json", timeout=30)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == DOCUMENT


def test_metrics_conform(service) -> None:
    response = requests.get(f"{service.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert re.match(r"text/plain; version=(0\.0\.4|1\.0\.0)", response.headers["Content-Type"])
    conforms("GET", "/metrics", response)


def test_refusals_of_a_guarded_service_conform(cloud, demo, tmp_path) -> None:
    token = "t0ken-for-the-openapi-test-0123456789"
    (tmp_path / "tokens").write_text(f"# test token\n{token}\n")
    env = {
        "OS_CLIENT_CONFIG_FILE": str(cloud.write_clouds_yaml(tmp_path / "clouds.yaml")),
        "INSTANCEAPI_CLOUDS": "demo",
        "INSTANCEAPI_TOKEN_FILE": str(tmp_path / "tokens"),
    }
    with ServiceProcess(env, workers=1) as guarded:
        path = f"/check/{demo['existing'][0]}"
        refused = requests.get(guarded.url + path, timeout=30)
        assert refused.status_code == 401
        assert "Instance-Exists" not in refused.headers
        conforms("GET", "/check/{uuid}", refused)
        wrong = requests.get(guarded.url + path, headers={"Authorization": "Bearer x"}, timeout=30)
        assert wrong.status_code == 401
        allowed = {"Authorization": f"Bearer {token}"}
        answer = requests.get(guarded.url + path, headers=allowed, timeout=30)
        assert answer.status_code == 200
        conforms("GET", "/check/{uuid}", answer)
        assert requests.get(guarded.url + "/healthz", timeout=30).status_code == 200


# -- schemathesis against the running service ---------------------------------------------

SCHEMA.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)
# A body over the limits is refused with 413, also a rejection of invalid input.
_rejection = SCHEMA.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis(case, service, session) -> None:
    """No 5xx, nothing outside the description, and 400 for every malformed UUID."""
    # GET /check has no valid input: its only answer is 400, by design.
    no_input = case.operation.path == "/check" and case.method in ("GET", "HEAD")
    response = case.call_and_validate(
        base_url=service.url,
        session=session,
        timeout=30,
        excluded_checks=[positive_data_acceptance] if no_input else None,
    )
    assert response.status_code < 500, response.text
    if case.operation.path == "/check/{uuid}" and case.method in ("GET", "HEAD"):
        # Schemathesis hands the path parameter over percent-encoded.
        raw = unquote(case.path_parameters["uuid"])
        if is_uuid_text(raw):
            # The cloud is healthy: a UUID is answered, 200 or 404 with the marker.
            assert response.status_code in (200, 404), (raw, response.status_code)
            assert response.headers["instance-exists"] in (["true"], ["false"])
        else:
            assert response.status_code == 400, (raw, response.status_code)
            assert "instance-exists" not in response.headers  # lower-case keys, list values
