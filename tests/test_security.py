"""Security review findings (issue 11), in-process: settings, access, what bodies reveal."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import logging
import os
from pathlib import Path

import pytest
from falcon import testing

from instanceapi import doctor
from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.check.refresher.loop import Refresher
from instanceapi.config import ConfigError, RegionSpec, Settings, private_dir_problem
from instanceapi.http.app import create_app
from tests.fakes import FakeCloud, new_uuid

BASE = {"INSTANCEAPI_CLOUDS": "mycloud"}
TOKEN = "a-token-of-the-satellite-team-0123"
DEPLOY = Path(__file__).parent.parent / "deploy" / "systemd"


# -- secrets and exposure (finding 2) --------------------------------------------------------------


def test_a_set_but_empty_token_file_setting_is_an_error() -> None:
    for value in ("", "  "):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE, "INSTANCEAPI_TOKEN_FILE": value})
        assert caught.value.key == "INSTANCEAPI_TOKEN_FILE"
        assert "empty" in str(caught.value)


def test_tokens_and_the_tls_key_are_found_among_systemd_credentials(tmp_path) -> None:
    (tmp_path / "instanceapi.api-tokens").write_text(f"# satellite\n{TOKEN}\n")
    (tmp_path / "instanceapi.tls-key").write_text("key")
    cert = tmp_path / "cert.pem"
    cert.write_text("certificate")
    settings = Settings.from_env(
        {**BASE, "CREDENTIALS_DIRECTORY": str(tmp_path), "INSTANCEAPI_CERTFILE": str(cert)}
    )
    assert settings.api_tokens == (TOKEN,)
    assert settings.keyfile == str(tmp_path / "instanceapi.tls-key")
    assert TOKEN not in repr(settings)


def test_an_explicit_token_file_wins_over_the_credential(tmp_path) -> None:
    (tmp_path / "instanceapi.api-tokens").write_text(f"{TOKEN}\n")
    explicit = tmp_path / "other"
    explicit.write_text("another-token-0123456789abcdef\n")
    settings = Settings.from_env(
        {**BASE, "CREDENTIALS_DIRECTORY": str(tmp_path), "INSTANCEAPI_TOKEN_FILE": str(explicit)}
    )
    assert settings.api_tokens == ("another-token-0123456789abcdef",)


def test_the_unit_hands_every_secret_over_as_a_credential_and_dumps_no_core() -> None:
    unit = (DEPLOY / "instanceapi.service").read_text()
    lines = {line.strip() for line in unit.splitlines()}
    assert "LoadCredential=clouds.yaml:/etc/instanceapi/clouds.yaml" in lines
    # By name: from systemd's credential store, skipped (not fatal) when absent.
    assert "LoadCredential=instanceapi.api-tokens" in lines
    assert "LoadCredential=instanceapi.tls-key" in lines
    assert "LimitCORE=0" in lines


def test_the_readme_never_makes_a_secret_readable_by_others() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Running in production", 1)[1].split("\n## ", 1)[0]
    installs = [line for line in section.splitlines() if line.startswith("install ")]
    assert installs
    for line in installs:
        if any(
            secret in line for secret in ("clouds.yaml", "api-tokens", "tls-key", "/etc/credstore")
        ):
            assert "-m 0600" in line or "-m 0700" in line, line
    assert "chmod" not in section


@pytest.mark.parametrize(
    ("bind", "warned"),
    [
        ("0.0.0.0:8080", True),
        ("[::]:8080", True),
        ("192.0.2.10:8080", True),
        ("instanceapi.example.com:8080", True),
        ("127.0.0.1:8080", False),
        ("[::1]:8080", False),
        ("localhost:8080", False),
        ("unix:/run/instanceapi/sock", False),
    ],
)
def test_an_open_non_loopback_bind_is_warned_about(bind: str, warned: bool) -> None:
    open_ = Settings.from_env({**BASE, "INSTANCEAPI_BIND": bind})
    assert (open_.exposure_warning() is not None) is warned
    guarded = dataclasses.replace(open_, allow_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    assert guarded.exposure_warning() is None
    assert dataclasses.replace(open_, api_tokens=(TOKEN,)).exposure_warning() is None


def test_doctor_reports_an_open_non_loopback_bind(tmp_path, monkeypatch) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  mycloud:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n"
        "      username: u\n      password: p\n      project_name: p\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
        "    region_name: RegionOne\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    out = io.StringIO()
    doctor.run({**BASE, "INSTANCEAPI_BIND": "0.0.0.0:8080", "INSTANCEAPI_TIMEOUT": "1"}, out)
    assert "is not loopback and neither INSTANCEAPI_TOKEN_FILE" in out.getvalue()


# -- smaller findings (7) --------------------------------------------------------------------------


def test_a_cidr_allowlist_with_a_unix_socket_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                **BASE,
                "INSTANCEAPI_BIND": "unix:/run/x.sock",
                "INSTANCEAPI_ALLOW_CIDRS": "10.0.0.0/8",
            }
        )
    assert caught.value.key == "INSTANCEAPI_ALLOW_CIDRS"


def test_a_runtime_dir_must_be_private_to_the_service_user(tmp_path) -> None:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    assert private_dir_problem(str(private)) is None
    assert Settings.from_env({**BASE, "INSTANCEAPI_RUNTIME_DIR": str(private)}).runtime_dir
    assert "owned by uid" in (private_dir_problem(str(private), uid=os.geteuid() + 1) or "")
    for mode in (0o750, 0o705, 0o777):
        os.chmod(private, mode)
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE, "INSTANCEAPI_RUNTIME_DIR": str(private)})
        assert caught.value.key == "INSTANCEAPI_RUNTIME_DIR"
        assert "accessible to others" in str(caught.value)


# -- what answers reveal (finding 4) ---------------------------------------------------------------


def client_for(
    cloud: FakeCloud, settings: Settings | None = None, *, refreshed: bool = False
) -> testing.TestClient:
    checker = Checker([RegionChecker(cloud.nova())])
    if refreshed:
        Refresher(checker.regions).run_once()
    settings = settings or Settings(regions=(RegionSpec("cloud"),))
    return testing.TestClient(create_app(settings, checker=checker))


@pytest.fixture
def cloud(requests_mock):
    return FakeCloud(requests_mock)


def test_a_404_body_names_no_server_or_project_of_the_probe(cloud, caplog) -> None:
    other_project = "f" * 32
    probe_server = cloud.add(project_id=other_project)
    caplog.set_level(logging.INFO)
    answer = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert answer.status_code == 404
    for secret in (probe_server, other_project, cloud.project_id):
        assert secret not in answer.text
    assert probe_server in caplog.text  # the operator still finds it in the log


def test_a_500_body_carries_no_endpoint_url_but_the_request_id(cloud, caplog) -> None:
    cloud.fail(r".*/auth/tokens$", status_code=500, json={"error": {"code": 500}})
    answer = client_for(cloud).simulate_get(f"/check/{new_uuid()}")
    assert answer.status_code == 500
    for url in (cloud.auth_url, "keystone.", cloud.compute_url):
        assert url not in answer.text
    assert answer.json["request_id"] == answer.headers["X-Request-ID"]
    assert "Keystone" in answer.json["detail"]
    assert cloud.auth_url in caplog.text


def test_readiness_detail_is_only_for_clients_that_passed_access_control(cloud) -> None:
    answer = client_for(cloud, refreshed=True).simulate_get("/readyz")
    assert answer.json == {"ready": answer.json["ready"]}
    assert "cloud" not in answer.text
    settings = Settings(regions=(RegionSpec("cloud"),), api_tokens=(TOKEN,))
    guarded = client_for(cloud, settings, refreshed=True)
    detail = guarded.simulate_get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert detail.json["targets"][0]["target"] == "cloud/RegionOne"


def test_allowed_hosts_refuse_other_host_headers(cloud) -> None:
    settings = Settings.from_env(
        {**BASE, "INSTANCEAPI_ALLOWED_HOSTS": "instanceapi.example.com, 127.0.0.1, ::1"}
    )
    client = client_for(cloud, dataclasses.replace(settings, regions=(RegionSpec("cloud"),)))
    uuid = cloud.add()
    for host in ("instanceapi.example.com", "INSTANCEAPI.example.com:8443", "127.0.0.1:8080"):
        assert client.simulate_get(f"/check/{uuid}", host=host).status_code == 200, host
    assert client.simulate_get(f"/check/{uuid}", headers={"Host": "[::1]:8080"}).status_code == 200
    for host in ("attacker.example", "instanceapi.example.com.attacker.example", "localhost"):
        refused = client.simulate_get(f"/check/{uuid}", host=host)
        assert refused.status_code == 400, host
        assert "Instance-Exists" not in refused.headers
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "INSTANCEAPI_ALLOWED_HOSTS": "http://x.example/"})
    assert caught.value.key == "INSTANCEAPI_ALLOWED_HOSTS"


def test_head_healthz_is_200(cloud) -> None:
    answer = client_for(cloud).simulate_head("/healthz")
    assert answer.status_code == 200
