"""The simulated cloud at scale: changes-since pages cost O(changes), answers unchanged.

A steady-state poll of a cloud of a million servers must not walk every server
under the cloud's lock; these tests count the servers a page examines and
compare every changes-since listing with a brute-force reference.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from instanceapi.testing import SimulatedCloud
from instanceapi.testing.clients import password_session
from instanceapi.testing.compute import ListQuery, Region
from instanceapi.testing.model import FakeServer

V296 = {"OpenStack-API-Version": "compute 2.96"}
PAGE = 25


@pytest.fixture
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud() as running:
        yield running


def listed(cloud: SimulatedCloud, since: dt.datetime) -> list[str]:
    """Every id of the all-project changes-since detail listing, page by page over HTTP."""
    sess = password_session(cloud)
    params = {"all_tenants": "1", "limit": str(PAGE), "changes-since": since.isoformat()}
    ids: list[str] = []
    for _ in range(1000):
        answer = sess.get(
            f"{cloud.nova_url()}/servers/detail?{urlencode(params)}",
            headers=V296,
            authenticated=True,
        )
        page = [s["id"] for s in answer.json()["servers"]]
        ids += page
        if len(page) < PAGE:
            return ids
        params["marker"] = page[-1]
    raise AssertionError("the listing did not end within 1000 pages")


def reference(servers: list[FakeServer], since: dt.datetime) -> list[str]:
    """Nova's answer by brute force (shared facts): a build request whatever its
    updated_at, a server in its cell never updated not at all, every other one
    updated at or after `since`; newest first (created_at desc, id desc)."""

    def selected(s: FakeServer) -> bool:
        if s.stage == "unscheduled":
            return True
        return s.stage != "unlisted" and s.updated_at >= since

    chosen = [s for s in servers if selected(s)]
    chosen.sort(key=lambda s: (s.created_at, s.id), reverse=True)
    return [s.id for s in chosen]


def _advance_one(cloud: SimulatedCloud, rng: random.Random, _: str) -> None:
    building = [s.id for s in cloud.servers() if s.stage is not None]
    if building:
        cloud.advance_build(rng.choice(building))


def _purge_sometimes(cloud: SimulatedCloud, rng: random.Random, _: str) -> None:
    if rng.random() < 0.3:
        cloud.purge_deleted()


Action = Callable[[SimulatedCloud, random.Random, str], object]
ACTIONS: list[Action] = [
    lambda c, r, i: c.set_status(i, r.choice(["PAUSED", "SHUTOFF", "ACTIVE", "ERROR"])),
    lambda c, r, i: c.delete_server(i),
    lambda c, r, i: c.soft_delete_server(i),
    lambda c, r, i: c.begin_delete(i),
    lambda c, r, i: c.backdate(i, r.uniform(0, 5)),
    lambda c, r, i: c.add_server(project=r.choice(["alpha", "beta"])),
    lambda c, r, i: c.add_server(project="alpha", stage=r.choice(["unscheduled", "unlisted"])),
    _advance_one,
    _purge_sometimes,
]


def shuffle_history(cloud: SimulatedCloud, rng: random.Random, steps: int) -> None:
    """Change servers at random through the cloud's own operations."""
    for _ in range(steps):
        target = rng.choice([s.id for s in cloud.servers() if not s.deleted])
        rng.choice(ACTIONS)(cloud, rng, target)


def test_changes_since_pages_equal_a_brute_force_reference(cloud: SimulatedCloud) -> None:
    rng = random.Random(12)  # noqa: S311 - a repeatable history
    cloud.populate(300, projects=["alpha", "beta"])
    for _ in range(4):
        shuffle_history(cloud, rng, 40)
        servers = cloud.servers()
        stamps = sorted(s.updated_at for s in servers)
        cuts = [rng.choice(stamps) for _ in range(4)]  # exact instants: inclusive
        cuts += [stamps[0] - dt.timedelta(seconds=1), stamps[-1] + dt.timedelta(seconds=1)]
        cuts += [stamps[-rng.randrange(1, 30)] + dt.timedelta(microseconds=1)]
        for since in cuts:
            assert listed(cloud, since) == reference(servers, since), since


def counting(match: Callable[[FakeServer], bool]) -> tuple[Callable[[FakeServer], bool], list[int]]:
    """Wrap a listing predicate; the list holds how many servers it examined."""
    seen = [0]

    def wrapped(server: FakeServer) -> bool:
        seen[0] += 1
        return match(server)

    return wrapped, seen


def big_region(n: int) -> tuple[Region, dt.datetime]:
    region = Region("RegionOne", "2.96")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    region.populate(n, [("p", "u")], random.Random(1), set(), start)  # noqa: S311
    return region, start + dt.timedelta(hours=1)


def test_an_empty_changes_since_page_examines_no_server() -> None:
    region, later = big_region(20_000)
    query = ListQuery(mode="changes", since=later)
    match, seen = counting(region.matcher(query, None))
    assert region.page(match, 1000, None, since=later) == []
    assert seen[0] == 0


def test_a_changes_since_page_examines_only_the_changed_servers() -> None:
    region, later = big_region(20_000)
    changed = [region.order[i] for i in (5, 9_000, 19_999)]
    for offset, server in enumerate(changed):
        region.set_status(server, "SHUTOFF", later + dt.timedelta(seconds=offset))
    query = ListQuery(mode="changes", since=later)
    match, seen = counting(region.matcher(query, None))
    page = region.page(match, 2, None, since=later)
    assert [s.id for s in page] == [changed[2].id, changed[1].id]
    match, seen_next = counting(region.matcher(query, None))
    assert region.page(match, 2, page[-1].id, since=later) == [changed[0]]
    assert (seen[0], seen_next[0]) == (2, 1)


def test_backdating_moves_a_server_out_of_a_changes_since_window() -> None:
    region, later = big_region(1_000)
    server = region.order[10]
    region.touch(server, later)
    query = ListQuery(mode="changes", since=later)
    assert region.page(region.matcher(query, None), 10, None, since=later) == [server]
    region.touch(server, later - dt.timedelta(seconds=1))
    assert region.page(region.matcher(query, None), 10, None, since=later) == []


def announce(tmp_path: Path, *args: str) -> dict[str, object]:
    """Start ``python -m instanceapi.testing``, read its announcement, stop it."""
    out = tmp_path / "announce.json"
    command = [sys.executable, "-m", "instanceapi.testing", "--servers=50", *args]
    command.append(f"--clouds-yaml={tmp_path / 'clouds.yaml'}")
    with out.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # 30 s at most
            text = out.read_text(encoding="utf-8")
            if text.endswith("\n") or process.poll() is not None:
                break
            time.sleep(0.1)
        data: dict[str, object] = json.loads(text)
        return data
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_announcing_a_sample_and_writing_every_id_to_a_file(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    data = announce(tmp_path, "--sample=5", f"--ids-file={ids_file}")
    every = ids_file.read_text(encoding="ascii").split()
    sample, existing = data["populated"], data["existing"]
    assert isinstance(sample, list) and isinstance(existing, list)
    assert len(sample) == 5 and data["populated_total"] == 50
    assert len(set(sample)) == 5 and set(sample) <= set(every)
    assert existing[-5:] == sample and set(existing) <= set(every)
    assert len(every) == len(set(every)) == 50 + len(existing) - 5


def test_without_a_sample_every_populated_id_is_announced(tmp_path: Path) -> None:
    data = announce(tmp_path)
    populated = data["populated"]
    assert isinstance(populated, list) and len(populated) == data["populated_total"] == 50


def test_the_cloud_counts_the_servers_its_listings_return(cloud: SimulatedCloud) -> None:
    cloud.populate(60, projects=["alpha"])
    before = cloud.counts
    assert len(listed(cloud, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))) == 60
    after = cloud.counts
    assert after["nova.servers_listed"] - before["nova.servers_listed"] == 60
    assert after["nova.list"] - before["nova.list"] == 3  # pages of 25, 25 and 10
    assert after["nova.list_changes_since"] - before["nova.list_changes_since"] == 3
    sess = password_session(cloud)
    sess.get(f"{cloud.nova_url()}/servers?all_tenants=1", headers=V296, authenticated=True)
    last = cloud.counts
    assert last["nova.servers_listed"] - after["nova.servers_listed"] == 60
    assert last["nova.list_changes_since"] == after["nova.list_changes_since"]
