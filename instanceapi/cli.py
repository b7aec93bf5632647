"""The ``instanceapi`` command.

Exit statuses:
  ``check``:  0 the instance exists, 1 it is absent, 2 OpenStack could not be asked
              (or the configuration is invalid), 3 the input is not a UUID.
  ``serve``:  Gunicorn's own (2 for an invalid configuration).
  ``demo``:   0 after Ctrl-C, 1 if the demo could not start.
  ``doctor``: 0 all well, 1 a problem with a target, 2 invalid configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from instanceapi import __version__
from instanceapi.config import ConfigError, Settings
from instanceapi.uuids import InvalidUUID, parse_uuid
from instanceapi.verdict import Presence

EXIT_PRESENT, EXIT_ABSENT, EXIT_UPSTREAM, EXIT_INVALID = 0, 1, 2, 3
_CHECK_EXIT = {
    Presence.PRESENT: EXIT_PRESENT,
    Presence.ABSENT: EXIT_ABSENT,
    Presence.UNKNOWN: EXIT_UPSTREAM,
}
Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="instanceapi",
        description="Does the OpenStack instance with this UUID still exist? (for Satellite)",
        epilog="Settings: INSTANCEAPI_* variables; credentials: "
        "clouds.yaml or OS_* variables. See the README.",
    )
    parser.add_argument("--version", action="version", version=f"instanceapi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service under Gunicorn")
    serve.add_argument(
        "gunicorn_args",
        nargs=argparse.REMAINDER,
        help="extra Gunicorn options, e.g. --certfile/--keyfile",
    )
    serve.set_defaults(handler=run_serve)

    check = commands.add_parser("check", help="check one UUID from the command line")
    check.add_argument("uuid")
    check.add_argument("--json", action="store_true", help="print the JSON answer")
    check.set_defaults(handler=run_check)

    demo = commands.add_parser("demo", help="run the service against a simulated cloud")
    demo.add_argument("--port", type=int, default=8080, help="service port (0: any free one)")
    demo.add_argument("--servers", type=int, default=0, help="extra ACTIVE servers to add")
    demo.set_defaults(handler=run_demo)

    doctor = commands.add_parser("doctor", help="check the configuration and every cloud/region")
    doctor.set_defaults(handler=run_doctor)

    _register_optional(commands)
    return parser


def _register_optional(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add sub-commands that live in their own packages."""
    try:
        from instanceapi.reap import cli as reap_cli
    except ImportError:  # pragma: no cover - the reap package ships with the service
        return
    reap_cli.register(commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


def run_check(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Check one UUID with the configured clouds and print the answer."""
    from instanceapi.http.app import build_checker
    from instanceapi.http.render import verdict_body

    try:
        canonical = parse_uuid(args.uuid)
    except InvalidUUID as ex:
        print(f"instanceapi: {ex}", file=sys.stderr)
        return EXIT_INVALID
    try:
        checker = build_checker(Settings.from_env(os.environ if environ is None else environ))
    except ConfigError as ex:
        print(f"instanceapi: configuration error: {ex}", file=sys.stderr)
        return EXIT_UPSTREAM
    verdict = checker.check(canonical)
    print(json.dumps(verdict_body(verdict), indent=2) if args.json else verdict.sentence())
    return _CHECK_EXIT[verdict.presence]


def run_serve(args: argparse.Namespace) -> int:
    """Replace this process with Gunicorn running the bundled configuration."""
    from instanceapi.serve.command import gunicorn_command

    os.execv(sys.executable, gunicorn_command(*args.gunicorn_args))  # noqa: S606 - exec keeps the PID for systemd
    return 0  # pragma: no cover


def run_doctor(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Check the configuration and every target; print a report."""
    from instanceapi import doctor

    return doctor.run(os.environ if environ is None else environ, sys.stdout)


def run_demo(args: argparse.Namespace) -> int:
    """Start the simulated cloud and the real service; print curl lines; wait."""
    from instanceapi.demo import run

    return run(port=args.port, extra_servers=args.servers)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
