"""Service settings: read once at start-up, validated, and frozen.

Settings come from ``INSTANCEAPI_*`` environment variables, optionally from a
``KEY=VALUE`` file named by ``INSTANCEAPI_CONFIG_FILE`` (the format systemd's
``EnvironmentFile=`` reads), the environment winning. OpenStack credentials are
not settings of ours: they come from clouds.yaml or ``OS_*`` variables through
openstacksdk's loader.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "INSTANCEAPI_"
_INTERFACES = ("public", "internal", "admin")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("plain", "json")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting is invalid; the message starts with the variable's name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class RegionSpec:
    """A named cloud, and a region of it (None: every region the cloud lists)."""

    cloud: str
    region: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the service reads at start-up."""

    #: The configured clouds and regions (INSTANCEAPI_CLOUDS).
    regions: tuple[RegionSpec, ...]
    timeout: float = 10.0
    retries: int = 2
    interface: str | None = None
    visibility_interval: float = 300.0
    refresh_interval: float = 15.0
    resync_interval: float = 86400.0
    resync_pause: float = 1.0
    index_max_age: float = 300.0
    absent_cache_size: int = 100_000
    #: Seconds a confirmed absence is answered from the cache before Nova is asked again.
    absent_cache_ttl: float = 3600.0
    bulk_concurrency: int = 8
    max_live_lookups: int = 12
    #: Nova GETs per second that checks may send (token bucket), and the bucket's size.
    upstream_rate: float = 20.0
    upstream_burst: int = 100
    #: Live lookups one bulk request may cause; its other unknown UUIDs get code 503.
    bulk_max_live: int = 50
    #: Seconds without authenticating after Keystone refuses or fails (doubling, up to 600).
    keystone_pause: float = 30.0
    log_level: str = "INFO"
    log_format: str = "plain"
    bind: str = "127.0.0.1:8080"
    workers: int = 2
    certfile: str | None = None
    #: Private directory shared by the workers (the absent verdicts' table).
    runtime_dir: str | None = None
    keyfile: str | None = None
    allow_networks: tuple[Network, ...] = ()
    #: Proxies whose X-Forwarded-For names the client (Gunicorn's forwarded_allow_ips).
    forwarded_allow: tuple[Network, ...] = ()
    #: Host header names served (empty: any); others get 400 (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    #: Bearer tokens the API accepts (empty: no authentication). Kept out of repr.
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: Catalog regions whose instances never register to this Satellite: not checked,
    #: and their absence from the configuration is no doubt (INSTANCEAPI_EXCLUDE_REGIONS).
    exclude_regions: tuple[RegionSpec, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from a mapping (os.environ in production, a dict in tests)."""
        env = _merged(environ)
        _reject_unknown(env)
        regions = _regions(env, environ)
        return cls(
            regions=regions,
            timeout=_number(env, "TIMEOUT", 10.0, low=0.1, high=300.0),
            retries=int(_number(env, "RETRIES", 2, low=0, high=10, integer=True)),
            interface=_choice(env, "INTERFACE", None, _INTERFACES),
            visibility_interval=_number(env, "VISIBILITY_INTERVAL", 300.0, low=5.0, high=86400.0),
            refresh_interval=_number(env, "REFRESH_INTERVAL", 15.0, low=1.0, high=3600.0),
            resync_interval=_number(env, "RESYNC_INTERVAL", 86400.0, low=10.0, high=604800.0),
            resync_pause=_number(env, "RESYNC_PAUSE", 1.0, low=0.0, high=60.0),
            index_max_age=_number(env, "INDEX_MAX_AGE", 300.0, low=5.0, high=86400.0),
            absent_cache_size=int(
                _number(env, "ABSENT_CACHE_SIZE", 100_000, low=0, high=10_000_000, integer=True)
            ),
            absent_cache_ttl=_number(env, "ABSENT_CACHE_TTL", 3600.0, low=1.0, high=604800.0),
            bulk_concurrency=int(_number(env, "BULK_CONCURRENCY", 8, low=1, high=64, integer=True)),
            max_live_lookups=int(
                _number(env, "MAX_UPSTREAM_LOOKUPS", 12, low=1, high=1024, integer=True)
            ),
            upstream_rate=_number(env, "UPSTREAM_RATE", 20.0, low=0.1, high=10_000.0),
            upstream_burst=int(
                _number(env, "UPSTREAM_BURST", 100, low=1, high=100_000, integer=True)
            ),
            bulk_max_live=int(_number(env, "BULK_MAX_LIVE", 50, low=0, high=1000, integer=True)),
            keystone_pause=_number(env, "KEYSTONE_PAUSE", 30.0, low=0.0, high=600.0),
            log_level=_choice(env, "LOG_LEVEL", "INFO", _LOG_LEVELS, upper=True) or "INFO",
            log_format=_choice(env, "LOG_FORMAT", "plain", _LOG_FORMATS) or "plain",
            bind=_bind(env),
            workers=int(_number(env, "WORKERS", 2, low=1, high=64, integer=True)),
            certfile=_readable(env, "CERTFILE"),
            runtime_dir=_private_dir(env, "RUNTIME_DIR"),
            keyfile=_readable(env, "KEYFILE") or _credential(environ, KEY_CREDENTIAL),
            allow_networks=_networks(env, "ALLOW_CIDRS"),
            forwarded_allow=_networks(env, "FORWARDED_ALLOW_IPS"),
            allowed_hosts=_hosts(env),
            api_tokens=_tokens(env, environ),
            exclude_regions=_excluded(env, regions),
        )._checked()

    def _checked(self) -> Settings:
        if bool(self.certfile) != bool(self.keyfile):
            key = PREFIX + ("KEYFILE" if self.certfile else "CERTFILE")
            raise ConfigError(key, "TLS needs both INSTANCEAPI_CERTFILE and INSTANCEAPI_KEYFILE")
        if self.allow_networks and self.bind.startswith("unix:"):
            raise ConfigError(
                PREFIX + "ALLOW_CIDRS",
                "a unix: socket has no client address to check; use INSTANCEAPI_TOKEN_FILE, "
                "or bind HOST:PORT",
            )
        return self

    def exposure_warning(self) -> str | None:
        """Return a warning if anyone on the network may ask (no token, no allowlist)."""
        if self.api_tokens or self.allow_networks or is_loopback_bind(self.bind):
            return None
        return (
            f"INSTANCEAPI_BIND={self.bind} is not loopback and neither INSTANCEAPI_TOKEN_FILE "
            "nor INSTANCEAPI_ALLOW_CIDRS is set: anyone who reaches this address may ask, "
            "and spend the upstream budget"
        )


#: Secrets handed over by systemd (LoadCredential=), found in $CREDENTIALS_DIRECTORY
#: when the matching setting is not given.
TOKENS_CREDENTIAL = "instanceapi.api-tokens"
KEY_CREDENTIAL = "instanceapi.tls-key"


def is_loopback_bind(bind: str) -> bool:
    """Return True for a unix: socket or a loopback HOST:PORT."""
    if bind.startswith("unix:"):
        return True
    host = bind.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_KNOWN = {
    "CLOUDS",
    "TIMEOUT",
    "RETRIES",
    "INTERFACE",
    "VISIBILITY_INTERVAL",
    "REFRESH_INTERVAL",
    "RESYNC_INTERVAL",
    "RESYNC_PAUSE",
    "INDEX_MAX_AGE",
    "ABSENT_CACHE_SIZE",
    "ABSENT_CACHE_TTL",
    "BULK_CONCURRENCY",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "MAX_UPSTREAM_LOOKUPS",
    "UPSTREAM_RATE",
    "UPSTREAM_BURST",
    "BULK_MAX_LIVE",
    "KEYSTONE_PAUSE",
    "TOKEN_FILE",
    "ALLOW_CIDRS",
    "FORWARDED_ALLOW_IPS",
    "ALLOWED_HOSTS",
    "CERTFILE",
    "RUNTIME_DIR",
    "KEYFILE",
    "BIND",
    "WORKERS",
    "CONFIG_FILE",
    "ACCESS_LOG",
    "EXCLUDE_REGIONS",
}


def merged_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Return INSTANCEAPI_* values from the config file, overridden by the environment.

    Raises ConfigError naming INSTANCEAPI_CONFIG_FILE when that file cannot be read.
    """
    return _merged(environ)


def _merged(environ: Mapping[str, str]) -> dict[str, str]:
    """Return INSTANCEAPI_* values from the config file, overridden by the environment."""
    values: dict[str, str] = {}
    path = environ.get(PREFIX + "CONFIG_FILE")
    if path:
        values.update(read_env_file(Path(path)))
    values.update({k: v for k, v in environ.items() if k.startswith(PREFIX)})
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=VALUE`` file: comments and blank lines ignored, quotes stripped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as ex:
        raise ConfigError(PREFIX + "CONFIG_FILE", f"cannot read {path}: {ex.strerror}") from ex
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(PREFIX + "CONFIG_FILE", f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _reject_unknown(env: Mapping[str, str]) -> None:
    for key in sorted(env):
        if key.startswith(PREFIX) and key[len(PREFIX) :] not in _KNOWN:
            raise ConfigError(key, "unknown setting (a typo?); see the README for the list")


def _regions(env: Mapping[str, str], environ: Mapping[str, str]) -> tuple[RegionSpec, ...]:
    key = PREFIX + "CLOUDS"
    raw = env.get(key, "").strip()
    if not raw:
        # The usual OpenStack defaults: a named cloud, else the openrc variables.
        raw = environ.get("OS_CLOUD", "") or ("envvars" if environ.get("OS_AUTH_URL") else "")
    if not raw:
        raise ConfigError(
            key,
            "no cloud configured: set it (e.g. 'mycloud' or "
            "'mycloud/RegionOne,other'), or OS_CLOUD, or source an openrc",
        )
    specs: list[RegionSpec] = []
    for item in (part.strip() for part in raw.split(",")):
        cloud, _, region = item.partition("/")
        if not cloud.strip() or (_ and not region.strip()):
            raise ConfigError(key, f"{item!r} is not 'cloud' or 'cloud/region'")
        spec = RegionSpec(cloud.strip(), region.strip() or None)
        if spec in specs:
            raise ConfigError(key, f"{item!r} is listed twice")
        specs.append(spec)
    return tuple(specs)


def _excluded(env: Mapping[str, str], regions: tuple[RegionSpec, ...]) -> tuple[RegionSpec, ...]:
    """Parse ``cloud/Region,...``: each of a configured cloud, none configured as a target."""
    key = PREFIX + "EXCLUDE_REGIONS"
    clouds = {spec.cloud for spec in regions}
    found: list[RegionSpec] = []
    for item in (part.strip() for part in env.get(key, "").split(",")):
        if not item:
            continue
        cloud, _, region = (part.strip() for part in item.partition("/"))
        spec = RegionSpec(cloud, region)
        if not cloud or not region:
            raise ConfigError(key, f"{item!r} is not 'cloud/Region'")
        if cloud not in clouds:
            raise ConfigError(key, f"{item!r}: cloud {cloud!r} is not in INSTANCEAPI_CLOUDS")
        if spec in regions:
            raise ConfigError(key, f"{item!r} is also configured in INSTANCEAPI_CLOUDS")
        if spec in found:
            raise ConfigError(key, f"{item!r} is listed twice")
        found.append(spec)
    return tuple(found)


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    low: float,
    high: float,
    integer: bool = False,
) -> float:
    key = PREFIX + name
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    convert: Callable[[str], float] = int if integer else float
    try:
        value = convert(raw.strip())
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(key, f"expected {kind}, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(key, f"must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _choice(
    env: Mapping[str, str],
    name: str,
    default: str | None,
    allowed: tuple[str, ...],
    *,
    upper: bool = False,
) -> str | None:
    key = PREFIX + name
    raw = env.get(key, "").strip()
    if not raw:
        return default
    value = raw.upper() if upper else raw.lower()
    if value not in allowed:
        raise ConfigError(key, f"expected one of {', '.join(allowed)}, got {raw!r}")
    return value


def _bind(env: Mapping[str, str]) -> str:
    key = PREFIX + "BIND"
    raw = env.get(key, "").strip() or "127.0.0.1:8080"
    if raw.startswith("unix:"):
        return raw
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(key, f"expected HOST:PORT or unix:PATH, got {raw!r}")
    return raw


def _readable(env: Mapping[str, str], name: str) -> str | None:
    key = PREFIX + name
    raw = env.get(key, "").strip()
    if not raw:
        return None
    if not os.access(raw, os.R_OK) or not Path(raw).is_file():
        raise ConfigError(key, f"{raw} is not a readable file")
    return raw


def _private_dir(env: Mapping[str, str], name: str) -> str | None:
    key = PREFIX + name
    raw = env.get(key, "").strip()
    if not raw:
        return None
    problem = private_dir_problem(raw)
    if problem:
        raise ConfigError(key, problem)
    return raw


def private_dir_problem(path: str, uid: int | None = None) -> str | None:
    """Return why `path` is not a private directory of user `uid` (default: this process's).

    The workers trust what they find there (absent verdicts, metrics): a
    directory someone else owns or may write to could feed them answers.
    """
    try:
        info = os.stat(path)
    except OSError as ex:
        return f"{path}: {ex.strerror}"
    if not stat.S_ISDIR(info.st_mode) or not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not a writable directory"
    uid = os.geteuid() if uid is None else uid
    if info.st_uid != uid:
        return f"{path} is owned by uid {info.st_uid}, not by the service user ({uid})"
    if info.st_mode & 0o077:
        return (
            f"{path} is accessible to others (mode {stat.S_IMODE(info.st_mode):04o}); "
            "make it 0700 (systemd: RuntimeDirectoryMode=0700)"
        )
    return None


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    key = PREFIX + name
    networks = []
    for item in (p.strip() for p in env.get(key, "").split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(key, f"{item!r} is not an address or CIDR network") from None
    return tuple(networks)


_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[?[0-9a-f:.]+\]?")


def _hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    key = PREFIX + "ALLOWED_HOSTS"
    hosts = [h.strip().lower() for h in env.get(key, "").split(",") if h.strip()]
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise ConfigError(key, f"{host!r} is not a host name or address (no port, no scheme)")
    return tuple(h.strip("[]") for h in hosts)


def _credential(environ: Mapping[str, str], name: str) -> str | None:
    """Return the path of a systemd credential handed to this service, if there is one."""
    directory = environ.get("CREDENTIALS_DIRECTORY", "").strip()
    path = Path(directory, name) if directory else None
    return str(path) if path is not None and path.is_file() else None


def _tokens(env: Mapping[str, str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """Read bearer tokens, one per line (# comments allowed); never echo them.

    From INSTANCEAPI_TOKEN_FILE, else from the systemd credential
    ``instanceapi.api-tokens``. Set but empty is an error: a typo must not
    start the service unauthenticated.
    """
    key = PREFIX + "TOKEN_FILE"
    if key in env and not env[key].strip():
        raise ConfigError(
            key, "is set but empty: name the token file, or remove the line to serve without tokens"
        )
    path = _readable(env, "TOKEN_FILE") or _credential(environ, TOKENS_CREDENTIAL)
    if path is None:
        return ()
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    tokens = tuple(t for t in (line.strip() for line in lines) if t and not t.startswith("#"))
    if not tokens:
        raise ConfigError(key, f"{path} holds no token")
    if any(len(t) < 16 for t in tokens):
        raise ConfigError(key, f"{path}: every token must be at least 16 characters")
    return tokens
