"""``instanceapi demo``: the real service, under Gunicorn, against a simulated cloud."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceError, ServiceProcess

INVALID_EXAMPLE = "not-a-uuid"


def run(*, port: int = 8080, extra_servers: int = 0) -> int:
    """Run the demo until Ctrl-C or SIGTERM; return the exit status."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    with tempfile.TemporaryDirectory(prefix="instanceapi-demo-") as tmp, SimulatedCloud() as cloud:
        data = seed_demo(cloud)
        if extra_servers:
            cloud.populate(extra_servers)
        clouds_yaml = Path(tmp) / "clouds.yaml"
        cloud.write_clouds_yaml(clouds_yaml, cloud_name="demo")
        env = {"OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "INSTANCEAPI_CLOUDS": "demo"}
        try:
            with ServiceProcess(env, port=port, workers=2, ready_path="/readyz") as service:
                print(banner(service.url, data["existing"][0], data["deleted"][0]), flush=True)
                _follow_log(service, stop)
        except ServiceError as ex:
            print(f"instanceapi demo: the service did not start:\n{ex}", file=sys.stderr)
            return 1
    return 0


def banner(url: str, existing: str, deleted: str) -> str:
    """Return the ready-to-paste curl lines a new user tries first."""
    return "\n".join(
        [
            f"instanceapi demo: service on {url}, simulated OpenStack on 127.0.0.1. Try:",
            "",
            f"  curl -i {url}/check/{existing}    # exists: 200",
            f"  curl -i {url}/check/{deleted}    # deleted: 404, Instance-Exists: false",
            f"  curl -i {url}/check/{INVALID_EXAMPLE}    # invalid: 400",
            f"  curl -H 'Accept: text/plain' {url}/check/{existing.upper()}",
            "",
            "Gunicorn's log follows. Ctrl-C stops the demo.",
        ]
    )


def _follow_log(service: ServiceProcess, stop: threading.Event) -> None:
    shown = 0
    try:
        while not stop.wait(0.5):
            text = service.log_text
            sys.stdout.write(text[shown:])
            sys.stdout.flush()
            shown = len(text)
    except KeyboardInterrupt:
        pass
