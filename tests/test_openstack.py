"""From clouds.yaml / OS_* variables to working targets, through openstack.config."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.config import ConfigError, Settings
from instanceapi.openstack import build_regions
from tests.fakes import PASSWORD, FakeCloud, new_uuid

SECRET = "app-cred-secret-9f8e7d"


@pytest.fixture(autouse=True)
def _no_ambient_openstack_env(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)


def write_clouds(tmp_path, monkeypatch, cloud: FakeCloud, **extra):
    auth = extra.pop(
        "auth",
        {
            "username": "svc",
            "password": PASSWORD,
            "project_name": "svc",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
    )
    entry = {"auth": {"auth_url": cloud.auth_url, **auth}, "identity_api_version": 3, **extra}
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"demo": entry}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))


def test_regions_list_gives_one_target_per_region(tmp_path, monkeypatch, requests_mock):
    one = FakeCloud(requests_mock, region="RegionOne")
    two = FakeCloud(requests_mock, region="RegionTwo")
    two.auth_url = one.auth_url  # one Keystone, two Nova regions
    write_clouds(tmp_path, monkeypatch, one, regions=["RegionOne", "RegionTwo"])
    targets = build_regions(Settings.from_env({"INSTANCEAPI_CLOUDS": "demo"}))
    assert [t.name for t in targets] == ["demo/RegionOne", "demo/RegionTwo"]


def test_password_cloud_answers_checks(tmp_path, monkeypatch, requests_mock):
    cloud = FakeCloud(requests_mock)
    uuid = cloud.add()
    write_clouds(tmp_path, monkeypatch, cloud, region_name="RegionOne")
    [target] = build_regions(Settings.from_env({"INSTANCEAPI_CLOUDS": "demo"}))
    checker = Checker([RegionChecker(target)])
    assert checker.check(uuid).presence.value == "present"
    assert checker.check(new_uuid()).presence.value == "absent"


def test_application_credential_auth(tmp_path, monkeypatch, requests_mock, caplog):
    caplog.set_level(logging.DEBUG)
    cloud = FakeCloud(requests_mock)
    uuid = cloud.add()
    write_clouds(
        tmp_path,
        monkeypatch,
        cloud,
        auth_type="v3applicationcredential",
        auth={"application_credential_id": "abc123", "application_credential_secret": SECRET},
        region_name="RegionOne",
    )
    [target] = build_regions(Settings.from_env({"INSTANCEAPI_CLOUDS": "demo"}))
    assert Checker([RegionChecker(target)]).check(uuid).presence.value == "present"
    [token_request] = [r for r in requests_mock.request_history if r.method == "POST"]
    assert json.loads(token_request.text)["auth"]["identity"]["methods"] == [
        "application_credential"
    ]
    assert SECRET not in caplog.text


def test_openrc_variables(monkeypatch, requests_mock):
    cloud = FakeCloud(requests_mock)
    uuid = cloud.add()
    for key, value in {
        "OS_AUTH_URL": cloud.auth_url,
        "OS_USERNAME": "svc",
        "OS_PASSWORD": PASSWORD,
        "OS_PROJECT_NAME": "svc",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": "RegionOne",
        "OS_CLIENT_CONFIG_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env({"OS_AUTH_URL": cloud.auth_url})
    [target] = build_regions(settings)
    assert target.cloud == "envvars"
    assert Checker([RegionChecker(target)]).check(uuid).presence.value == "present"


def test_cacert_is_honoured_and_insecure_is_explicit(tmp_path, monkeypatch, requests_mock, caplog):
    cloud = FakeCloud(requests_mock)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not really a certificate")
    write_clouds(tmp_path, monkeypatch, cloud, cacert=str(bundle), region_name="RegionOne")
    [target] = build_regions(Settings.from_env({"INSTANCEAPI_CLOUDS": "demo"}))
    assert target._session.verify == str(bundle)
    assert "TLS verification is turned off" not in caplog.text

    write_clouds(tmp_path, monkeypatch, cloud, verify=False, region_name="RegionOne")
    [target] = build_regions(Settings.from_env({"INSTANCEAPI_CLOUDS": "demo"}))
    assert target._session.verify is False
    assert "TLS verification is turned off" in caplog.text


def test_timeout_and_retries_reach_the_session(tmp_path, monkeypatch, requests_mock):
    cloud = FakeCloud(requests_mock)
    write_clouds(tmp_path, monkeypatch, cloud, region_name="RegionOne")
    [target] = build_regions(
        Settings.from_env(
            {"INSTANCEAPI_CLOUDS": "demo", "INSTANCEAPI_TIMEOUT": "7", "INSTANCEAPI_RETRIES": "3"}
        )
    )
    assert target._session.timeout == 7.0
    assert target._retries == 3


def test_unknown_cloud_names_the_setting(tmp_path, monkeypatch, requests_mock):
    write_clouds(tmp_path, monkeypatch, FakeCloud(requests_mock))
    with pytest.raises(ConfigError, match="INSTANCEAPI_CLOUDS: cloud 'nope' is not configured"):
        build_regions(Settings.from_env({"INSTANCEAPI_CLOUDS": "nope"}))
