"""Run a simulated cloud until SIGTERM/SIGINT.

    python -m instanceapi.testing --servers 20 --clouds-yaml clouds.yaml

Prints one JSON line (auth_url, clouds_yaml, control, existing, deleted, ...) on stdout.
``existing`` lists the demo servers, then the ``--servers`` ones (``populated``;
``populated_total`` counts them). At a million servers that line would be 39 MB:
``--sample K`` announces K of the populated ids drawn at random (seeded), and
``--ids-file PATH`` writes every existing id to PATH, one per line, first.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
from pathlib import Path

from instanceapi.testing.cloud import SimulatedCloud
from instanceapi.testing.demo import seed_demo

# clouds.yaml entries written next to "demo" (admin): cloud name -> user.
EXTRA_CLOUDS = {"demo-member": "member", "demo-reader": "reader", "demo-reader-all": "reader-all"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m instanceapi.testing", description=__doc__)
    parser.add_argument(
        "--servers", type=int, default=20, help="extra ACTIVE servers on top of the demo mix"
    )
    parser.add_argument("--clouds-yaml", type=Path, help="where to write clouds.yaml")
    parser.add_argument(
        "--port-base",
        type=int,
        help="Keystone on P, Nova regions on P+1.., control after them (default: free ports)",
    )
    parser.add_argument("--regions", default="RegionOne", help="comma-separated region names")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="per Nova request")
    parser.add_argument("--per-server-ms", type=float, default=0.0, help="per server returned")
    parser.add_argument("--max-limit", type=int, default=1000)
    parser.add_argument("--max-microversion", default="2.96")
    parser.add_argument("--token-ttl", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sample",
        type=int,
        help="announce only this many of the --servers ids, drawn at random (seeded)",
    )
    parser.add_argument(
        "--ids-file", type=Path, help="write every existing server id here, one per line"
    )
    args = parser.parse_args(argv)
    if args.sample is not None and args.sample < 0:
        parser.error("--sample must be 0 or more")
    return args


def announced(
    ids: dict[str, list[str]], populated: list[str], sample: int | None, seed: int
) -> dict[str, object]:
    """The id part of the announcement: demo ids, then the populated ones or a sample."""
    shown = populated
    if sample is not None and sample < len(populated):
        shown = random.Random(seed).sample(populated, sample)  # noqa: S311 - a test sample
    existing = ids["existing"] + shown
    return {**ids, "existing": existing, "populated": shown, "populated_total": len(populated)}


def write_ids(path: Path, ids: list[str]) -> None:
    """Write `ids` one per line to `path` (through a temporary file: never half written)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(f"{i}\n" for i in ids), encoding="ascii")
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Start, seed, announce, serve until a signal; exit 0."""
    args = parse_args(argv)
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    cloud = SimulatedCloud(
        regions=regions,
        max_microversion=args.max_microversion,
        max_limit=args.max_limit,
        token_ttl=args.token_ttl,
        nova_latency=args.latency_ms / 1000.0,
        per_server_latency=args.per_server_ms / 1000.0,
        port_base=args.port_base,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        cloud.start()
    except OSError as exc:
        cloud.stop()
        sys.stderr.write(f"simulated cloud: cannot listen: {exc}\n")
        return 1
    try:
        ids = seed_demo(cloud)
        populated = cloud.populate(args.servers, seed=args.seed) if args.servers > 0 else []
        if args.ids_file is not None:
            write_ids(args.ids_file, ids["existing"] + populated)
        path = args.clouds_yaml or Path(tempfile.mkdtemp(prefix="simcloud-")) / "clouds.yaml"
        cloud.write_clouds_yaml(path, cloud_name="demo", user="admin")
        for name, user in EXTRA_CLOUDS.items():
            cloud.write_clouds_yaml(path, cloud_name=name, user=user)
        announce = {
            "auth_url": cloud.auth_url,
            "clouds_yaml": str(path.resolve()),
            "control": cloud.control_url,
            "nova_urls": {r: cloud.nova_url(r) for r in cloud.regions},
            "projects": cloud.projects,
            **announced(ids, populated, args.sample, args.seed),
        }
        sys.stdout.write(json.dumps(announce) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        cloud.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
