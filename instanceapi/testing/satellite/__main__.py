"""``python -m instanceapi.testing.satellite``: start one, print where it is."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import uuid as uuidlib
from datetime import datetime
from typing import Any

from instanceapi.testing.satellite.server import SimulatedSatellite


def load_hosts(sim: SimulatedSatellite, data: Any) -> None:
    """Add hosts from `data`: the demo cloud's JSON line, or {"hosts": [...]} / a list."""
    if isinstance(data, dict) and ("existing" in data or "deleted" in data):
        uuids = list(data.get("existing", [])) + list(data.get("deleted", []))
        for number, value in enumerate(sorted(uuids), 1):
            sim.add_guest(f"vm-{number:03d}.demo.example.com", value)
        sim.add_host("metal-01.demo.example.com", product="PowerEdge R650")
        vmware_uuid = str(uuidlib.uuid4())
        sim.add_host(
            "vmware-01.demo.example.com", uuid=vmware_uuid, product="VMware Virtual Platform"
        )
        sim.add_host("satellite.demo.example.com")
        return
    for item in data["hosts"] if isinstance(data, dict) else data:
        item = dict(item)
        if isinstance(item.get("last_checkin"), str):
            item["last_checkin"] = datetime.fromisoformat(item["last_checkin"])
        sim.add_host(item.pop("name"), **item)


def main(argv: list[str] | None = None) -> int:
    """Serve a simulated Satellite until interrupted; print its URL and credentials first."""
    parser = argparse.ArgumentParser(prog="python -m instanceapi.testing.satellite")
    parser.add_argument("--hosts-from-json", metavar="FILE", required=True, help=_FILE_HELP)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="changeme")
    args = parser.parse_args(argv)
    with open(args.hosts_from_json, encoding="utf-8") as fh:
        lines = fh.read().strip().splitlines() or ["[]"]
    sim = SimulatedSatellite(user=args.user, password=args.password, port=args.port)
    # The demo cloud prints its JSON on the last line; a hosts file is one JSON document.
    load_hosts(sim, json.loads(lines[-1] if lines[-1].startswith('{"') else "\n".join(lines)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with sim, contextlib.suppress(KeyboardInterrupt):
        info = {"url": sim.url, "user": sim.user, "password": sim.password}
        print(json.dumps({**info, "hosts": len(sim.names())}), flush=True)
        stop.wait()
    return 0


_FILE_HELP = (
    'the demo cloud\'s JSON line ({"existing": [...], "deleted": [...]}), or {"hosts": [...]}'
)

if __name__ == "__main__":
    raise SystemExit(main())
