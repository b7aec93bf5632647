"""What a hostile client costs OpenStack: upstream requests counted at the simulated cloud.

One worker with the default settings, on loopback:

1. ``POST /check`` of 1,000 random uuid4s whose byte-swapped twins are version 4 too;
2. right after, a 64-way flood of single checks of fresh UUIDs;
3. a 5-UUID bulk sent while 4 hostile bulks of 1,000 run (its time and codes);
4. a new service whose password Keystone refuses, and the same bulk.

Run: ``python -m benchmarks.amplification`` (about 10 s). Only the requests for the UUIDs
sent are counted (the index refreshes are not).
"""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceProcess, service_env
from instanceapi.testing.hostile import nova_gets, uuids_with_v4_twins


def codes(answer: requests.Response) -> dict[int, int]:
    """Count a bulk answer's per-item codes."""
    found: dict[int, int] = {}
    for result in answer.json()["results"]:
        found[result["code"]] = found.get(result["code"], 0) + 1
    return found


def small_bulk_among_hostile_ones(url: str) -> None:
    """Time a 5-UUID bulk sent while 4 bulks of 1,000 unknown UUIDs are under way."""

    def hostile() -> None:
        requests.post(f"{url}/check", json={"uuids": uuids_with_v4_twins(1000)}, timeout=600)

    threads = [threading.Thread(target=hostile) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the hostile bulks are under way
    started = time.perf_counter()
    small = requests.post(f"{url}/check", json={"uuids": uuids_with_v4_twins(5)}, timeout=600)
    took = time.perf_counter() - started
    for thread in threads:
        thread.join()
    print(f"5-UUID bulk among 4 hostile ones: {took:.2f}s, codes {codes(small)}")


def main() -> None:
    """Print the three measurements."""
    with SimulatedCloud() as cloud, tempfile.TemporaryDirectory() as tmp:
        seed_demo(cloud)
        env = service_env(cloud, Path(tmp))
        with ServiceProcess(env, workers=1, ready_path="/readyz") as service:
            bulk = uuids_with_v4_twins(1000)
            answer = requests.post(f"{service.url}/check", json={"uuids": bulk}, timeout=600)
            print(f"bulk of 1000: {nova_gets(cloud, bulk)} Nova GETs, codes {codes(answer)}")
            flood = uuids_with_v4_twins(64, twin_v4=False)
            with ThreadPoolExecutor(64) as pool:
                statuses = list(
                    pool.map(
                        lambda u: requests.get(f"{service.url}/check/{u}", timeout=60).status_code,
                        flood,
                    )
                )
            counted = {s: statuses.count(s) for s in sorted(set(statuses))}
            print(f"64-way flood: {nova_gets(cloud, flood)} Nova GETs, statuses {counted}")
            time.sleep(6)  # the bucket refills (20/s): the small bulk competes for it
            small_bulk_among_hostile_ones(service.url)
        clouds = Path(env["OS_CLIENT_CONFIG_FILE"])
        clouds.write_text(clouds.read_text().replace(cloud.password("admin"), "rotated"))
        cloud.reset_counts()
        with ServiceProcess(env, workers=1, ready_path="/healthz") as service:
            answer = requests.post(f"{service.url}/check", json={"uuids": bulk}, timeout=600)
            tokens = cloud.counts["keystone.token"]
            print(f"refused password, bulk of 1000: {tokens} token requests, codes {codes(answer)}")


if __name__ == "__main__":
    main()
