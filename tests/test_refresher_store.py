"""One refresher publishes, workers read: the index through the shared store, at the HTTP boundary.

Nova and Keystone are faked with requests-mock (tests/fakes.py); the store is
a real directory; the gate is a real Unix socket. Counts, never times.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from instanceapi.check.gate import GateError, GateServer, ask
from instanceapi.check.index import EVERYTHING
from instanceapi.check.refresher.publish import PublishingIndex, ResyncStopped
from instanceapi.check.shared_index import FALLBACK_AFTER, SharedIndex, SharedVisibility
from instanceapi.check.store.layout import StoreLayout, WriterLock
from instanceapi.check.visibility import Rule, Visibility, VisibilityTracker
from instanceapi.openstack import UpstreamError
from tests.fakes import FakeCloud, new_uuid


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cloud(requests_mock) -> FakeCloud:
    return FakeCloud(requests_mock, page_size=50)


@pytest.fixture
def layout(tmp_path: Path) -> StoreLayout:
    layout = StoreLayout(tmp_path / "store")
    layout.create()
    return layout


@pytest.fixture
def writer(layout: StoreLayout) -> Iterator[WriterLock]:
    """Hold the store's lock as the refresher does: workers then see it running."""
    with WriterLock(layout) as lock:
        yield lock


def publisher(cloud: FakeCloud, layout: StoreLayout, clock: Clock, **rule: object):
    nova = cloud.nova()
    index = PublishingIndex(
        nova,
        snapshot=layout.snapshot(nova.fingerprint),
        state=layout.state(nova.fingerprint),
        rule_fields=lambda: dict(rule),
        clock=clock,
    )
    return nova, index


def reader(nova, layout: StoreLayout, clock: Clock, *, gate_timeout: float = 5.0) -> SharedIndex:
    return SharedIndex(nova.name, layout, nova.fingerprint, gate_timeout=gate_timeout, clock=clock)


def listings(cloud: FakeCloud) -> int:
    return cloud.calls("GET", "/servers/detail")


def test_the_bootstrap_listing_is_read_once_and_every_worker_reads_it(cloud, layout, clock, writer):
    servers = [cloud.add() for _ in range(120)]
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=None)
    assert listings(cloud) == 3  # 120 servers, pages of 50

    workers = [reader(nova, layout, clock) for _ in range(4)]
    for worker in workers:
        assert all(worker.peek(s) == "ACTIVE" for s in servers)
        assert worker.peek(new_uuid()) is None
        assert len(worker) == 120
        assert worker.age() == 0.0
        assert worker.down is None
    assert listings(cloud) == 3  # reading costs Nova nothing


def test_a_poll_adds_new_servers_and_marks_deleted_ones(cloud, layout, clock, writer):
    kept, gone = cloud.add(), cloud.add()
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=EVERYTHING)
    worker = reader(nova, layout, clock)
    generation = worker.state(cached=False).snapshot_generation

    born = cloud.add()
    cloud.servers[gone]["status"] = "DELETED"
    clock.now += 15
    index.refresh(full_since=EVERYTHING)

    assert worker.peek(born) == "ACTIVE"
    assert worker.peek(gone) == "DELETED"
    assert worker.peek(kept) == "ACTIVE"
    assert worker.deleted_at(gone) is not None
    assert worker.state(cached=False).snapshot_generation == generation + 1


def test_a_poll_without_changes_rewrites_only_the_state(cloud, layout, clock, writer):
    cloud.add()
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=None)
    worker = reader(nova, layout, clock)
    before = worker.state(cached=False)

    clock.now += 15
    index.refresh(full_since=None)

    after = worker.state(cached=False)
    assert after.snapshot_generation == before.snapshot_generation
    assert after.listed_from == before.listed_from + 15


def test_a_failing_page_publishes_nothing_and_workers_see_the_failure(cloud, layout, clock, writer):
    for _ in range(120):
        cloud.add()
    nova, index = publisher(cloud, layout, clock)
    cloud.fail(r".*/servers/detail\?.*marker=.*", status_code=503, json={})
    with pytest.raises(UpstreamError):
        index.refresh(full_since=None)

    worker = reader(nova, layout, clock)
    assert not layout.snapshot(nova.fingerprint).exists()
    assert worker.age() is None  # never listed: no evidence of anything
    with pytest.raises(UpstreamError, match="listings fail"):
        worker.refresh(full_since=None)


def test_without_a_running_refresher_the_index_is_down_and_stale(cloud, layout, clock):
    server = cloud.add()
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=None)  # published, but nobody holds the store's lock now
    worker = reader(nova, layout, clock)

    assert worker.down is not None
    assert worker.age() is None
    assert worker.peek(server) == "ACTIVE"  # readable, but not fresh: checks go live
    with pytest.raises(UpstreamError, match="not running"):
        worker.refresh(full_since=None)


def test_the_paced_resync_drops_archived_rows_and_keeps_changes_made_meanwhile(
    cloud, layout, clock, writer
):
    kept = [cloud.add() for _ in range(60)]
    archived = cloud.add("DELETED")
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=EVERYTHING)
    worker = reader(nova, layout, clock)
    assert worker.peek(archived) == "DELETED"

    del cloud.servers[archived]  # nova-manage db archive_deleted_rows
    born_during_the_walk = []

    class Pausing(threading.Event):
        def wait(self, timeout=None):  # between pages: a server is born meanwhile
            born_during_the_walk.append(cloud.add())
            return False

    assert index.resync(pause=0.0, stopping=Pausing())

    assert worker.peek(archived) is None
    assert all(worker.peek(s) == "ACTIVE" for s in kept + born_during_the_walk)


def test_a_resync_whose_page_fails_removes_nothing(cloud, layout, clock, writer):
    for _ in range(120):
        cloud.add()
    archived = cloud.add("DELETED")
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=EVERYTHING)
    worker = reader(nova, layout, clock)
    generation = worker.state(cached=False).snapshot_generation
    del cloud.servers[archived]

    cloud.fail(r".*/servers/detail\?.*marker=.*", status_code=500, json={})
    with pytest.raises(UpstreamError):
        index.resync(pause=0.0, stopping=threading.Event())

    assert worker.peek(archived) == "DELETED"
    assert worker.state(cached=False).snapshot_generation == generation


def test_a_stopping_resync_publishes_nothing(cloud, layout, clock, writer):
    for _ in range(2500):
        cloud.add()
    nova, index = publisher(cloud, layout, clock)
    cloud.page_size = 1000
    index.refresh(full_since=None)
    stopping = threading.Event()
    stopping.set()
    generation = reader(nova, layout, clock).state(cached=False).snapshot_generation
    with pytest.raises(ResyncStopped):
        index.resync(pause=0.0, stopping=stopping)
    assert reader(nova, layout, clock).state(cached=False).snapshot_generation == generation


def test_the_listing_rule_asks_the_gate_and_checks_the_published_state(
    cloud, layout, clock, writer
):
    gone = cloud.add()
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=EVERYTHING)
    gate = GateServer(
        layout.directory / "gate.sock",
        {nova.fingerprint: lambda after, fs: index.listed_after(after, full_since=fs)},
    )
    gate.start()
    try:
        worker = reader(nova, layout, clock)
        cloud.servers[gone]["status"] = "DELETED"
        clock.now += 1
        asked_at = clock.now
        polls = listings(cloud)
        assert worker.status_as_of(gone, asked_at, full_since=EVERYTHING) == "DELETED"
        assert listings(cloud) == polls + 1
        # A second question asked before that poll began rides on it: no new poll.
        assert worker.status_as_of(gone, asked_at, full_since=EVERYTHING) == "DELETED"
        assert listings(cloud) == polls + 1
    finally:
        gate.stop()


def test_concurrent_questions_share_one_poll(cloud, layout, clock, writer):
    for _ in range(10):
        cloud.add()
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=EVERYTHING)
    entered, release = threading.Event(), threading.Event()

    def slow_handler(after: float, full_since: str | None) -> None:
        entered.set()
        release.wait(10)
        index.listed_after(after, full_since=full_since)

    gate = GateServer(layout.directory / "gate.sock", {nova.fingerprint: slow_handler})
    gate.start()
    try:
        clock.now += 1
        asked_at = clock.now
        polls = listings(cloud)
        answers: list[str | None] = []
        workers = [reader(nova, layout, clock) for _ in range(8)]
        threads = [
            threading.Thread(
                target=lambda w=w: answers.append(
                    w.status_as_of(new_uuid(), asked_at, full_since=EVERYTHING)
                )
            )
            for w in workers
        ]
        for thread in threads:
            thread.start()
        assert entered.wait(10)
        release.set()
        for thread in threads:
            thread.join(10)
        assert answers == [None] * 8  # listed nowhere: an omission, never DELETED
        assert listings(cloud) == polls + 1
    finally:
        gate.stop()


def test_without_a_gate_the_listing_rule_is_doubt(cloud, layout, clock, writer):
    server = cloud.add()
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=EVERYTHING)
    worker = reader(nova, layout, clock, gate_timeout=1.0)
    clock.now += 1
    with pytest.raises(UpstreamError, match="no listing read after the question"):
        worker.status_as_of(server, clock.now, full_since=EVERYTHING)


def test_a_gate_reply_is_not_evidence_without_a_newer_published_listing(
    cloud, layout, clock, writer
):
    server = cloud.add()
    nova, index = publisher(cloud, layout, clock)
    index.refresh(full_since=EVERYTHING)
    lying = GateServer(layout.directory / "gate.sock", {nova.fingerprint: lambda a, f: None})
    lying.start()
    try:
        worker = reader(nova, layout, clock)
        clock.now += 1
        with pytest.raises(UpstreamError, match="was published"):
            worker.status_as_of(server, clock.now, full_since=EVERYTHING)
    finally:
        lying.stop()


def test_gate_errors_are_named(layout):
    with pytest.raises(GateError, match="unreachable"):
        ask(layout.directory / "gate.sock", "k", 1.0, None, 1.0)

    def failing(after: float, full_since: str | None) -> None:
        raise UpstreamError("demo", "Nova answered 503")

    gate = GateServer(layout.directory / "gate.sock", {"k": failing})
    gate.start()
    try:
        with pytest.raises(GateError, match="Nova answered 503"):
            ask(layout.directory / "gate.sock", "k", 1.0, None, 5.0)
        with pytest.raises(GateError, match="malformed"):
            ask(layout.directory / "gate.sock", "unknown-region", 1.0, None, 5.0)
    finally:
        gate.stop()


def test_the_gate_socket_works_under_a_long_runtime_path(tmp_path):
    deep = StoreLayout(tmp_path / ("d" * 90) / "store")
    deep.directory.mkdir(parents=True)
    gate = GateServer(deep.directory / "gate.sock", {"k": lambda a, f: None})
    gate.start()
    try:
        ask(deep.directory / "gate.sock", "k", 1.0, None, 5.0)
    finally:
        gate.stop()


# -- the absence rule: the refresher's, a worker's own only as a fallback ------------


def probes(cloud: FakeCloud) -> int:
    return cloud.calls("GET", "/servers/detail?all_tenants")


def by_id_published(cloud: FakeCloud, layout: StoreLayout, clock: Clock) -> None:
    """Publish an index whose state says: by-id, proved with the admin role."""
    _, index = publisher(
        cloud,
        layout,
        clock,
        rule="by-id",
        rule_reason="probed with the admin role",
        rule_checked_at=clock.now,
        rule_project=cloud.project_id,
        rule_roles="admin,member,reader",
    )
    index.refresh(full_since=None)


def worker_rule(cloud: FakeCloud, layout: StoreLayout, clock: Clock):
    """Return a worker's Nova client and its view of the refresher's absence rule."""
    worker_nova = cloud.nova()
    visibility = SharedVisibility(
        reader(worker_nova, layout, clock),
        VisibilityTracker(worker_nova, interval=300, clock=clock),
        interval=300,
        clock=clock,
    )
    return worker_nova, visibility


def test_workers_follow_the_refreshers_rule_without_probing(cloud, layout, clock, writer):
    cloud.add(project_id="0" * 32)
    by_id_published(cloud, layout, clock)
    worker_nova, visibility = worker_rule(cloud, layout, clock)
    before = probes(cloud)

    rule = visibility.current(worker_nova.identity())
    assert rule.rule is Rule.BY_ID
    assert probes(cloud) == before


def test_a_worker_whose_token_changed_probes_for_itself(cloud, layout, clock, writer):
    cloud.add(project_id="0" * 32)
    by_id_published(cloud, layout, clock)
    cloud.roles = ("member", "reader")  # the admin role was removed since
    worker_nova, visibility = worker_rule(cloud, layout, clock)
    before = probes(cloud)
    rule = visibility.current(worker_nova.identity())
    assert probes(cloud) == before + 1
    assert rule.rule is not Rule.BY_ID


def test_no_probe_while_the_refresher_starts_then_a_fallback_probe(cloud, layout, clock):
    cloud.add(project_id="0" * 32)
    worker_nova, visibility = worker_rule(cloud, layout, clock)
    before = probes(cloud)
    assert visibility.current(worker_nova.identity()).rule is Rule.NONE
    assert probes(cloud) == before  # the refresher may just be starting

    clock.now += FALLBACK_AFTER + 2
    assert visibility.current(worker_nova.identity()).rule is Rule.BY_ID
    assert probes(cloud) == before + 1


def test_a_published_rule_survives_a_short_refresher_outage_only(cloud, layout, clock):
    published = Visibility(Rule.BY_ID, "probed", clock.now)
    nova, index = publisher(
        cloud,
        layout,
        clock,
        rule="by-id",
        rule_reason="probed",
        rule_checked_at=clock.now,
        rule_project=None,
        rule_roles=None,
    )
    index.refresh(full_since=None)
    shared = reader(nova, layout, clock)
    visibility = SharedVisibility(
        shared, VisibilityTracker(nova, interval=300, clock=clock), interval=300, clock=clock
    )
    assert visibility.peek().rule is published.rule
    clock.now += 301  # the refresher is down and its rule is older than our own would be
    assert visibility.peek().rule is Rule.NONE


def full_listings(cloud: FakeCloud) -> int:
    return sum(
        1
        for r in cloud.mocker.request_history
        if "/servers/detail" in r.url
        and "limit=" in r.url
        and ("changes-since" not in r.url or "changes-since=1970-" in r.url)
    )


def test_a_successor_continues_from_the_published_index_without_a_full_listing(
    cloud, layout, clock, writer
):
    kept, gone = cloud.add(), cloud.add()
    nova, first = publisher(cloud, layout, clock)
    first.refresh(full_since=EVERYTHING)
    assert full_listings(cloud) == 1

    _, successor = publisher(cloud, layout, clock)  # a restart, or a reload
    assert successor.adopt()
    assert len(successor) == 2
    cloud.servers[gone]["status"] = "DELETED"
    clock.now += 15
    successor.refresh(full_since=EVERYTHING)

    assert full_listings(cloud) == 1  # a changes-since poll, not a second full listing
    worker = reader(nova, layout, clock)
    assert worker.peek(gone) == "DELETED"
    assert worker.peek(kept) == "ACTIVE"
    assert worker.state(cached=False).listed_from == clock.now


def test_nothing_published_or_another_rule_means_a_full_listing(cloud, layout, clock, writer):
    cloud.add()
    _, fresh = publisher(cloud, layout, clock)
    assert not fresh.adopt()  # nothing published yet

    fresh.refresh(full_since=None)  # published without soft-deleted servers
    _, successor = publisher(cloud, layout, clock)
    assert successor.adopt()
    successor.refresh(full_since=EVERYTHING)  # the listing rule needs them: list again
    assert full_listings(cloud) == 2


def test_a_damaged_snapshot_is_not_adopted(cloud, layout, clock, writer):
    cloud.add()
    nova, first = publisher(cloud, layout, clock)
    first.refresh(full_since=None)
    snapshot = layout.snapshot(nova.fingerprint)
    data = bytearray(snapshot.read_bytes())
    data[-1] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    _, successor = publisher(cloud, layout, clock)
    assert not successor.adopt()
