"""`instanceapi reap`: delete Satellite hosts whose OpenStack instance is gone.

Dry-run unless `--apply`. A host record is deleted only when the instanceapi
service said "absent" authoritatively in `--confirm-runs` runs at least
`--confirm-interval` apart, the plan is within `--max-delete` and
`--max-delete-percent`, the service passed its readiness gate (and `--canary`),
and the host is not linked to a compute resource, protected by a parameter,
excluded by name, or (with `--min-last-checkin-age`) recently checked in. Right
before the DELETE the host must still show the virt::uuid and registration it was
sighted with; over any `--budget-window` at most `--budget` hosts are deleted; a
deletion counts once Satellite answers 404 for the host.

Exit statuses:
  0  run complete; every planned deletion done (or, in dry-run, planned)
  1  run complete, but at least one DELETE failed (the others went ahead)
  2  usage or local error: bad option, missing secret, plain http:// not accepted,
     state file locked or unwritable; or, with --apply, the Satellite user cannot
     read host parameters (view_params), so protection would be invisible
  3  Satellite could not be read; nothing deleted
  4  service not ready (/readyz not 200, or --canary not found); nothing deleted
  5  a deletion cap was exceeded (nothing deleted), or the rolling deletion budget
     held some hosts back
  6  run complete, but some candidates got no authoritative answer (they were kept)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from instanceapi.reap import satellite, service
from instanceapi.reap.audit import AuditLog
from instanceapi.reap.config import ENV_PREFIX, ConfigError, ReapConfig, resolve
from instanceapi.reap.plan import PROTECT_PARAMETER
from instanceapi.reap.report import Progress, render_summary, write_report
from instanceapi.reap.runner import EXIT_USAGE, Reaper, Result
from instanceapi.reap.state import StateError, StateFile
from instanceapi.reap.textfile import RunRecorder

_DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def register(subparsers: Any) -> None:
    """Add the "reap" sub-command to an argparse `subparsers` object."""
    parser = subparsers.add_parser(
        "reap",
        help="delete Satellite hosts whose OpenStack instance is gone (dry-run by default)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    """Return the standalone parser (the same options as `instanceapi reap`)."""
    parser = argparse.ArgumentParser(
        prog="instanceapi reap",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every reap option to `parser`."""
    env = f"(or ${ENV_PREFIX}"
    parser.add_argument(
        "--apply", action="store_true", help="delete; without it, only print the plan"
    )
    sat = parser.add_argument_group("Satellite")
    sat.add_argument(
        "--satellite-url", help=f"for example https://satellite.example.com {env}SATELLITE_URL)"
    )
    sat.add_argument("--satellite-user", help=f"API user {env}SATELLITE_USER)")
    sat.add_argument(
        "--satellite-password-file",
        metavar="PATH",
        help=f"file holding the password or personal access token {env}SATELLITE_PASSWORD,"
        " or the systemd credential satellite-password)",
    )
    sat.add_argument("--satellite-ca-bundle", metavar="PATH", help="CA bundle for Satellite's TLS")
    sat.add_argument(
        "--per-page", type=int, default=500, help="page size for listings (default 500)"
    )
    sat.add_argument(
        "--satellite-retries",
        type=int,
        default=2,
        help="retries of a failed listing page, 2 s then 4 s apart (default 2)",
    )
    scope = parser.add_argument_group("scope")
    scope.add_argument("--organization", help="only hosts of this organization")
    scope.add_argument("--location", help="only hosts of this location")
    scope.add_argument("--hostgroup", help="only hosts of this host group (full title)")
    scope.add_argument(
        "--search", help="extra Foreman host search, e.g. 'name ~ \".cloud.example.com\"'"
    )
    scope.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="never touch hosts whose name matches (repeatable)",
    )
    scope.add_argument(
        "--protect-parameter",
        default=PROTECT_PARAMETER,
        help=f"host parameter that, when true, protects a host (default {PROTECT_PARAMETER})",
    )
    scope.add_argument(
        "--product",
        action="append",
        metavar="NAME",
        help='accepted DMI product name (repeatable; default "OpenStack Compute"'
        ' and "OpenStack Nova")',
    )
    scope.add_argument(
        "--product-fact", default="dmi::system::product_name", help="fact holding the product name"
    )
    scope.add_argument("--uuid-fact", default="virt::uuid", help="fact holding the instance UUID")
    scope.add_argument(
        "--min-last-checkin-age",
        metavar="DURATION",
        help="also require the last check-in to be older, e.g. 7d",
    )
    svc = parser.add_argument_group("instanceapi service")
    svc.add_argument(
        "--service-url", help=f"for example https://instanceapi.example.com {env}SERVICE_URL)"
    )
    svc.add_argument(
        "--service-token-file",
        metavar="PATH",
        help=f"bearer token file {env}SERVICE_TOKEN, or the credential service-token)",
    )
    svc.add_argument("--service-ca-bundle", metavar="PATH", help="CA bundle for the service's TLS")
    svc.add_argument(
        "--service-cert",
        metavar="PATH",
        help=f"client certificate, for a front that requires mutual TLS {env}SERVICE_CERT)",
    )
    svc.add_argument(
        "--service-key", metavar="PATH", help=f"the client certificate's key {env}SERVICE_KEY)"
    )
    svc.add_argument(
        "--canary",
        metavar="UUID",
        help="an instance known to exist; must answer 200 before anything is done",
    )
    svc.add_argument(
        "--batch-size",
        type=int,
        default=500,
        help="UUIDs per POST /check (default 500, at most 1000)",
    )
    svc.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)"
    )
    rails = parser.add_argument_group("safety rails")
    rails.add_argument(
        "--max-delete", type=int, default=10, help="abort if more hosts are absent (default 10)"
    )
    rails.add_argument(
        "--max-delete-percent",
        type=float,
        default=5.0,
        help="abort if a larger share of candidates is absent (default 5)",
    )
    rails.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help="at most N deletions within --budget-window, across runs (default: --max-delete)",
    )
    rails.add_argument(
        "--budget-window",
        default="7d",
        metavar="DURATION",
        help="the rolling window of --budget (default 7d)",
    )
    rails.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="accept http:// URLs (secrets in clear, answers forgeable)"
        f" {env}ALLOW_PLAIN_HTTP=yes)",
    )
    rails.add_argument(
        "--confirm-runs",
        type=int,
        default=2,
        help="absent in this many consecutive runs before deletion (default 2)",
    )
    rails.add_argument(
        "--confirm-interval",
        default="1h",
        metavar="DURATION",
        help="at least this long between counted runs (default 1h)",
    )
    files = parser.add_argument_group("files")
    files.add_argument(
        "--state-file",
        metavar="PATH",
        help="confirmation state (default $STATE_DIRECTORY/state.json,"
        " else ~/.local/state/instanceapi-reap/state.json)",
    )
    files.add_argument(
        "--audit-log",
        metavar="PATH",
        help="append-only JSON-lines audit log (default audit.jsonl next to the state file)",
    )
    files.add_argument(
        "--report", metavar="PATH", help="write one row per host to this CSV or JSON file"
    )
    files.add_argument(
        "--report-format", choices=("csv", "json"), help="report format (default: by extension)"
    )
    files.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write the run's figures here for node_exporter's textfile collector"
        " (a .prom file, replaced atomically at the end of every run)",
    )
    parser.add_argument("--now", help=argparse.SUPPRESS)  # tests: pretend the run happens then


def run(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run reap with parsed `args`, write --metrics-file (if given); return the exit status."""
    err = stderr or sys.stderr
    path = Path(args.metrics_file) if args.metrics_file else None
    if path is not None and not path.parent.is_dir():
        print(f"instanceapi reap: --metrics-file: no directory {path.parent}", file=err)
        return EXIT_USAGE
    recorder = RunRecorder(path)
    status = _run(args, recorder, env=env, clock=clock, stdout=stdout, stderr=err)
    try:
        recorder.finish(status)
    except OSError as ex:
        print(f"instanceapi reap: --metrics-file: {ex}", file=err)
        return status or EXIT_USAGE
    return status


def _run(
    args: argparse.Namespace,
    recorder: RunRecorder,
    *,
    env: Mapping[str, str] | None,
    clock: Callable[[], datetime] | None,
    stdout: TextIO | None,
    stderr: TextIO,
) -> int:
    out, err = stdout or sys.stdout, stderr
    try:
        config = resolve(args, os.environ if env is None else env)
    except ConfigError as ex:
        print(f"instanceapi reap: {ex}", file=err)
        return EXIT_USAGE
    progress = Progress(err)
    reaper = _reaper(config, clock, progress, err)
    try:
        lock = reaper.state_file.lock() if config.settings.apply else contextlib.nullcontext()
        with lock:
            result = reaper.run()
        recorder.record(result.decisions, result.hosts_read, config.settings.apply)
        if config.report:
            write_report(config.report, result.decisions, config.report_format)
    except (StateError, OSError) as ex:
        progress.clear()
        print(f"instanceapi reap: {ex}", file=err)
        return EXIT_USAGE
    progress.clear()
    out.write(_summary(result, reaper.mode))
    return result.status


def main(
    argv: list[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Parse `argv` and run; return the exit status."""
    args = build_parser().parse_args(argv)
    return run(args, env=env, clock=clock, stdout=stdout, stderr=stderr)


def _reaper(
    config: ReapConfig, clock: Callable[[], datetime] | None, progress: Progress, err: TextIO
) -> Reaper:
    if clock is None:
        fixed = config.now
        clock = (lambda: fixed) if fixed else (lambda: datetime.now(UTC))
    sat = satellite.SatelliteClient(
        config.satellite_url,
        satellite.build_session(
            config.satellite_user, config.satellite_secret, config.satellite_ca
        ),
        per_page=config.per_page,
        timeout=config.timeout,
        retries=config.satellite_retries,
    )
    svc = service.ServiceClient(
        config.service_url,
        service.build_session(config.service_token, config.service_ca, config.service_cert),
        timeout=config.timeout,
        batch_size=config.batch_size,
    )
    mode = "apply" if config.settings.apply else "dry-run"
    audit = AuditLog(config.audit_log, run_id=uuid.uuid4().hex[:12], mode=mode)
    return Reaper(
        config.settings,
        sat,
        svc,
        StateFile(config.state_file),
        audit,
        clock,
        progress,
        warn=lambda msg: print(f"instanceapi reap: warning: {msg}", file=err),
    )


def _summary(result: Result, mode: str) -> str:
    return render_summary(
        result.decisions, mode=mode, hosts_read=result.hosts_read, headline=result.headline
    )


if __name__ == "__main__":
    sys.exit(main())
