"""Settings: defaults, validation naming the bad key, and the env file."""

from __future__ import annotations

import pytest

from instanceapi.config import ConfigError, RegionSpec, Settings

BASE = {"INSTANCEAPI_CLOUDS": "demo"}


def test_defaults():
    settings = Settings.from_env(BASE)
    assert settings.regions == (RegionSpec("demo"),)
    assert (settings.timeout, settings.retries, settings.bind) == (10.0, 2, "127.0.0.1:8080")


def test_targets_with_regions():
    settings = Settings.from_env({"INSTANCEAPI_CLOUDS": "a/RegionOne, a/RegionTwo,b"})
    assert settings.regions == (
        RegionSpec("a", "RegionOne"),
        RegionSpec("a", "RegionTwo"),
        RegionSpec("b"),
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OS_CLOUD": "mycloud"}, RegionSpec("mycloud")),
        ({"OS_AUTH_URL": "https://keystone.example:5000/v3"}, RegionSpec("envvars")),
    ],
)
def test_openstack_defaults(env, expected):
    assert Settings.from_env(env).regions == (expected,)


def test_absent_cache_ttl_default_and_setting():
    assert Settings.from_env(BASE).absent_cache_ttl == 3600.0
    assert Settings.from_env({**BASE, "INSTANCEAPI_ABSENT_CACHE_TTL": "60"}).absent_cache_ttl == 60


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INSTANCEAPI_TIMEOUT", "abc"),
        ("INSTANCEAPI_TIMEOUT", "0"),
        ("INSTANCEAPI_TIMEOUT", "nan"),
        ("INSTANCEAPI_RETRIES", "1.5"),
        ("INSTANCEAPI_RETRIES", "99"),
        ("INSTANCEAPI_INTERFACE", "private"),
        ("INSTANCEAPI_LOG_LEVEL", "chatty"),
        ("INSTANCEAPI_BIND", "8080"),
        ("INSTANCEAPI_BIND", "host:99999"),
        ("INSTANCEAPI_WORKERS", "0"),
        ("INSTANCEAPI_CLOUDS", "a/"),
        ("INSTANCEAPI_CLOUDS", "a,a"),
        ("INSTANCEAPI_VISIBILITY_INTERVAL", "1"),
        ("INSTANCEAPI_ABSENT_CACHE_TTL", "0"),
        ("INSTANCEAPI_ABSENT_CACHE_TTL", "a week"),
        ("INSTANCEAPI_ABSENT_CACHE_TTL", "604801"),
        ("INSTANCEAPI_TIMEOUTS", "5"),
    ],
)
def test_invalid_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, key: value})
    assert caught.value.key == key
    assert str(caught.value).startswith(key + ":")


def test_no_cloud_at_all_is_an_error():
    with pytest.raises(ConfigError, match="INSTANCEAPI_CLOUDS: no cloud configured"):
        Settings.from_env({})


def test_env_file_is_read_and_environment_wins(tmp_path):
    path = tmp_path / "instanceapi.env"
    path.write_text("# comment\nINSTANCEAPI_CLOUDS=fromfile\nINSTANCEAPI_TIMEOUT='3'\n\n")
    settings = Settings.from_env({"INSTANCEAPI_CONFIG_FILE": str(path), "INSTANCEAPI_TIMEOUT": "4"})
    assert settings.regions == (RegionSpec("fromfile"),)
    assert settings.timeout == 4.0


def test_env_file_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="INSTANCEAPI_CONFIG_FILE: cannot read"):
        Settings.from_env({"INSTANCEAPI_CONFIG_FILE": str(tmp_path / "missing")})
    bad = tmp_path / "bad.env"
    bad.write_text("JUSTAWORD\n")
    with pytest.raises(ConfigError, match=r"bad\.env:1: expected KEY=VALUE"):
        Settings.from_env({"INSTANCEAPI_CONFIG_FILE": str(bad)})


def test_example_env_file_lists_every_setting_and_is_valid():
    """deploy/systemd/instanceapi.env.example documents every setting, and parses."""
    from pathlib import Path

    from instanceapi.config import _KNOWN, read_env_file

    example = Path(__file__).parent.parent / "deploy" / "systemd" / "instanceapi.env.example"
    text = example.read_text()
    documented = {name for name in _KNOWN if f"INSTANCEAPI_{name}=" in text}
    assert documented == _KNOWN - {"CONFIG_FILE"}
    assert Settings.from_env(read_env_file(example)).regions == (RegionSpec("mycloud"),)


def test_tls_needs_both_files_and_readable_ones(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("certificate")
    key.write_text("key")
    both = Settings.from_env(
        {**BASE, "INSTANCEAPI_CERTFILE": str(cert), "INSTANCEAPI_KEYFILE": str(key)}
    )
    assert (both.certfile, both.keyfile) == (str(cert), str(key))
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "INSTANCEAPI_CERTFILE": str(cert)})
    assert caught.value.key == "INSTANCEAPI_KEYFILE"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                **BASE,
                "INSTANCEAPI_CERTFILE": str(tmp_path / "missing.pem"),
                "INSTANCEAPI_KEYFILE": str(key),
            }
        )
    assert caught.value.key == "INSTANCEAPI_CERTFILE"


def test_token_file_and_networks_are_validated(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# nobody yet\n")
    with pytest.raises(ConfigError, match=r"INSTANCEAPI_TOKEN_FILE: .* holds no token"):
        Settings.from_env({**BASE, "INSTANCEAPI_TOKEN_FILE": str(tokens)})
    tokens.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        Settings.from_env({**BASE, "INSTANCEAPI_TOKEN_FILE": str(tokens)})
    with pytest.raises(ConfigError, match="INSTANCEAPI_ALLOW_CIDRS: 'ten' is not"):
        Settings.from_env({**BASE, "INSTANCEAPI_ALLOW_CIDRS": "10.0.0.0/8, ten"})
    secret = "a-long-enough-secret-token-123"
    tokens.write_text(secret + "\n")
    settings = Settings.from_env({**BASE, "INSTANCEAPI_TOKEN_FILE": str(tokens)})
    assert settings.api_tokens == (secret,)
    assert secret not in repr(settings)


def test_forwarded_allow_ips_are_networks_and_never_everyone():
    settings = Settings.from_env({**BASE, "INSTANCEAPI_FORWARDED_ALLOW_IPS": "127.0.0.1, ::1"})
    assert [str(n) for n in settings.forwarded_allow] == ["127.0.0.1/32", "::1/128"]
    assert Settings.from_env(BASE).forwarded_allow == ()
    with pytest.raises(ConfigError, match="INSTANCEAPI_FORWARDED_ALLOW_IPS: '\\*' is not"):
        Settings.from_env({**BASE, "INSTANCEAPI_FORWARDED_ALLOW_IPS": "*"})
