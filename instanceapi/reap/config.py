"""Turn command-line options and environment variables into a checked configuration.

Secrets never come from the command line: the Satellite password (or personal
access token) and the service's bearer token are read from a file named by an
option, from an environment variable, or from the systemd credentials directory.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from instanceapi.reap import plan
from instanceapi.reap.runner import Settings

ENV_PREFIX = "INSTANCEAPI_REAP_"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


class ConfigError(Exception):
    """The configuration is unusable; the message names the option or variable."""


@dataclass(frozen=True)
class ReapConfig:
    """Everything a run needs, validated."""

    satellite_url: str
    satellite_user: str
    satellite_secret: str = field(repr=False)
    service_url: str
    settings: Settings
    state_file: Path
    audit_log: Path
    satellite_ca: str | None = None
    service_token: str | None = field(default=None, repr=False)
    service_ca: str | None = None
    #: Client certificate and key for a front that requires mutual TLS.
    service_cert: tuple[str, str] | None = None
    per_page: int = 500
    satellite_retries: int = 2
    batch_size: int = 500
    timeout: float = 30.0
    report: Path | None = None
    report_format: str | None = None
    now: datetime | None = None


def parse_duration(text: str) -> timedelta:
    """Parse "90", "90s", "30m", "1h", "7d" or "2w" into a timedelta."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 1h, 7d")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> ReapConfig:
    """Build the configuration from parsed `args` and the environment `env`."""
    state_file = Path(args.state_file) if args.state_file else _state_dir(env) / "state.json"
    plain = args.allow_plain_http or _yes(env.get(ENV_PREFIX + "ALLOW_PLAIN_HTTP", ""))
    return ReapConfig(
        satellite_url=_url(
            _pick(args.satellite_url, env, "SATELLITE_URL", "--satellite-url"), plain
        ),
        satellite_user=_pick(args.satellite_user, env, "SATELLITE_USER", "--satellite-user"),
        satellite_secret=_secret(args.satellite_password_file, env, "SATELLITE_PASSWORD")
        or _missing("--satellite-password-file", "SATELLITE_PASSWORD"),
        satellite_ca=args.satellite_ca_bundle or env.get(ENV_PREFIX + "SATELLITE_CA_BUNDLE"),
        service_url=_url(_pick(args.service_url, env, "SERVICE_URL", "--service-url"), plain),
        service_token=_secret(args.service_token_file, env, "SERVICE_TOKEN"),
        service_ca=args.service_ca_bundle or env.get(ENV_PREFIX + "SERVICE_CA_BUNDLE"),
        service_cert=_client_cert(args, env),
        settings=_settings(args),
        state_file=state_file,
        audit_log=Path(args.audit_log)
        if args.audit_log
        else _audit_dir(env, state_file) / "audit.jsonl",
        per_page=_at_least(args.per_page, 1, "--per-page"),
        satellite_retries=_at_least(args.satellite_retries, 0, "--satellite-retries"),
        batch_size=int(_within(args.batch_size, 1, 1000, "--batch-size")),
        timeout=_within(args.timeout, 0.1, 3600, "--timeout"),
        report=Path(args.report) if args.report else None,
        report_format=args.report_format,
        now=_now(args.now),
    )


def _settings(args: argparse.Namespace) -> Settings:
    policy = plan.Policy(
        products=frozenset(p.strip().casefold() for p in (args.product or plan.DEFAULT_PRODUCTS)),
        exclude=tuple(args.exclude or ()),
        protect_parameter=args.protect_parameter,
        min_checkin_age=_duration(args.min_last_checkin_age, "--min-last-checkin-age"),
        max_delete=_at_least(args.max_delete, 0, "--max-delete"),
        max_delete_percent=_within(args.max_delete_percent, 0, 100, "--max-delete-percent"),
    )
    canary = None
    if args.canary:
        canary = plan.canonical_uuid(args.canary)
        if canary is None:
            raise ConfigError(f"--canary {args.canary!r} is not a UUID")
    return Settings(
        apply=args.apply,
        policy=policy,
        search=_scope(args),
        uuid_fact=args.uuid_fact,
        product_fact=args.product_fact,
        confirm_runs=_at_least(args.confirm_runs, 1, "--confirm-runs"),
        confirm_interval=_duration(args.confirm_interval, "--confirm-interval") or timedelta(0),
        canary=canary,
        narrow_by=tuple(
            key
            for key, given in (
                ("organization_id", args.organization),
                ("location_id", args.location),
            )
            if given
        ),
        budget=None if args.budget is None else _at_least(args.budget, 0, "--budget"),
        budget_window=_positive(
            _duration(args.budget_window, "--budget-window"), "--budget-window"
        ),
    )


def _scope(args: argparse.Namespace) -> str:
    """Return the Foreman host search for the scope options, each clause in parentheses."""
    clauses = [f"({args.search})"] if args.search else []
    for key, value in (
        ("organization", args.organization),
        ("location", args.location),
        ("hostgroup_title", args.hostgroup),
    ):
        if value:
            if '"' in value:
                raise ConfigError(f"--{key.split('_')[0]} must not contain a double quote")
            clauses.append(f'{key} = "{value}"')
    return " and ".join(clauses)


def _pick(value: str | None, env: Mapping[str, str], var: str, option: str) -> str:
    found = value or env.get(ENV_PREFIX + var, "")
    if not found.strip():
        raise ConfigError(f"{option} (or {ENV_PREFIX}{var}) is required")
    return found.strip()


def _secret(path: str | None, env: Mapping[str, str], var: str) -> str | None:
    """Read a secret from the file `path`, else $INSTANCEAPI_REAP_<var>, else a credential."""
    if not path and env.get(ENV_PREFIX + var):
        return env[ENV_PREFIX + var]
    if not path and env.get("CREDENTIALS_DIRECTORY"):
        credential = Path(env["CREDENTIALS_DIRECTORY"]) / var.lower().replace("_", "-")
        path = str(credential) if credential.is_file() else None
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as ex:
        raise ConfigError(f"cannot read secret file {path}: {ex.strerror}") from ex
    if not text:
        raise ConfigError(f"secret file {path} is empty")
    return text


def _missing(option: str, var: str) -> str:
    raise ConfigError(f"{option} (or {ENV_PREFIX}{var}) is required")


def _client_cert(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str] | None:
    """Return the (certificate, key) paths for mutual TLS: both or neither, readable."""
    cert = args.service_cert or env.get(ENV_PREFIX + "SERVICE_CERT", "")
    key = args.service_key or env.get(ENV_PREFIX + "SERVICE_KEY", "")
    if not cert and not key:
        return None
    for value, option, var in ((cert, "--service-cert", "CERT"), (key, "--service-key", "KEY")):
        if not value:
            raise ConfigError(f"{option} (or {ENV_PREFIX}SERVICE_{var}) is required with the other")
        if not Path(value).is_file() or not os.access(value, os.R_OK):
            raise ConfigError(f"{option}: {value} is not a readable file")
    return cert, key


def _url(text: str, plain: bool) -> str:
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"{text!r} is not an http(s) URL")
    if text.startswith("http://") and not plain:
        raise ConfigError(
            f"{text} is plain HTTP: the password or token would travel in clear and the"
            " answers could be forged; use https://, or accept the risk with"
            f" --allow-plain-http (or {ENV_PREFIX}ALLOW_PLAIN_HTTP=yes)"
        )
    return text.rstrip("/")


def _yes(text: str) -> bool:
    return text.strip().lower() in ("1", "yes", "true", "on")


def _duration(text: str | None, option: str) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as ex:
        raise ConfigError(f"{option}: {ex}") from ex


def _positive(value: timedelta | None, option: str) -> timedelta:
    if value is None or value <= timedelta(0):
        raise ConfigError(f"{option} must be longer than 0")
    return value


def _at_least(value: int, low: int, option: str) -> int:
    if value < low:
        raise ConfigError(f"{option} must be at least {low}")
    return value


def _within(value: float, low: float, high: float, option: str) -> float:
    if not low <= value <= high:
        raise ConfigError(f"{option} must be between {low:g} and {high:g}")
    return value


def _now(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as ex:
        raise ConfigError(f"--now {text!r} is not an ISO 8601 time") from ex
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _state_dir(env: Mapping[str, str]) -> Path:
    if env.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local/state")
    return Path(base) / "instanceapi-reap"


def _audit_dir(env: Mapping[str, str], state_file: Path) -> Path:
    if env.get("LOGS_DIRECTORY"):  # set by systemd's LogsDirectory=
        return Path(env["LOGS_DIRECTORY"].split(":")[0])
    return state_file.parent
