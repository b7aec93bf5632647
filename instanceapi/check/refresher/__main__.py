"""``python -m instanceapi.check.refresher``: the one process per service that lists Nova.

Started and supervised by the Gunicorn master (``instanceapi serve``), it does
the bootstrap listing, the changes-since polls, the paced resync and the
visibility probes of every configured region, and publishes the index into
the store in ``$INSTANCEAPI_RUNTIME_DIR`` for the workers to read. It answers
the workers' listing requests over the store's gate socket. It exits when
the master is gone (its lifeline closes) or on SIGTERM.

Exit status 2: invalid configuration (named on stderr).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from instanceapi import logs
from instanceapi.check.catalog import coverages
from instanceapi.check.gate import GateServer, Handler
from instanceapi.check.refresher.loop import Refresher
from instanceapi.check.refresher.publish import PublishingIndex, ResyncStopped
from instanceapi.check.region import RegionChecker
from instanceapi.check.shared_index import layout_for
from instanceapi.check.store.layout import StoreLayout, WriterLock
from instanceapi.config import ConfigError, Settings
from instanceapi.http.app import upstream_observer
from instanceapi.metrics import Metrics
from instanceapi.openstack import UpstreamError
from instanceapi.serve.child import announce_ready, master_gone

log = logging.getLogger("instanceapi.check.refresher")


@dataclass(frozen=True)
class Published:
    """One region as the refresher keeps it: its store key, its checker, its publishing index."""

    key: str
    region: RegionChecker
    index: PublishingIndex


def rule_fields(region: RegionChecker) -> dict[str, object]:
    """Return the absence rule of `region` as the state file carries it."""
    rule = region.visibility.peek()
    return {
        "rule": rule.rule.value,
        "rule_reason": rule.reason,
        "rule_checked_at": rule.checked_at,
        "rule_project": rule.identity.project_id if rule.identity else None,
        "rule_roles": ",".join(sorted(rule.identity.roles)) if rule.identity else None,
    }


def build_regions(settings: Settings, metrics: Metrics) -> tuple[StoreLayout, list[Published]]:
    """Return the store and each region's fingerprint and publishing checker (no I/O)."""
    from instanceapi.openstack import build_regions

    if not settings.runtime_dir:
        raise ConfigError("INSTANCEAPI_RUNTIME_DIR", "the refresher needs the runtime directory")
    novas = build_regions(settings, upstream_observer(metrics))
    layout = layout_for(settings.runtime_dir, [nova.fingerprint for nova in novas])
    covering = coverages(novas, settings.exclude_regions)
    regions: list[Published] = []
    for nova in novas:
        index = PublishingIndex(
            nova, snapshot=layout.snapshot(nova.fingerprint), state=layout.state(nova.fingerprint)
        )
        region = RegionChecker(
            nova,
            visibility_interval=settings.visibility_interval,
            max_index_age=settings.index_max_age,
            coverage=covering[nova.cloud],
            index=index,
            # One unfiltered page per visibility interval, not per poll (docs/benchmark.md).
            cells_interval=settings.visibility_interval,
        )
        index.rule_fields = functools.partial(rule_fields, region)
        regions.append(Published(nova.fingerprint, region, index))
    return layout, regions


def resync_forever(
    published: Published, *, interval: float, pause: float, stopping: threading.Event
) -> None:
    """Walk the whole listing again every `interval` seconds, paced, until `stopping` is set."""
    region, index = published.region, published.index
    while not stopping.wait(interval):
        try:
            if index.resync(pause=pause, stopping=stopping):
                log.info("%s: resync published: %d servers", region.nova.name, len(index))
        except ResyncStopped:
            return
        except UpstreamError as ex:
            log.warning("%s: resync failed, nothing removed: %s", region.nova.name, ex.reason)
        except Exception:  # a bug must not end the resyncs; the polls go on regardless
            log.exception("%s: resync failed unexpectedly", region.nova.name)


def serve(settings: Settings, stopping: threading.Event) -> None:
    """Run until `stopping` is set: polls, probes, resyncs and the gate, for every region."""
    metrics = Metrics()
    layout, published = build_regions(settings, metrics)
    regions = [p.region for p in published]
    announce_ready()  # the configuration is valid: a reload may retire our predecessor
    layout.create()
    with WriterLock(layout):  # waits while a predecessor of this configuration still runs
        log.info(
            "refresher: publishing the index of %d region(s) in %s", len(regions), layout.directory
        )
        for one in published:
            if one.index.adopt():
                log.info(
                    "%s: continuing from the published index (%d servers): no full listing",
                    one.region.nova.name,
                    len(one.index),
                )
        gate = GateServer(
            layout.directory / "gate.sock",
            {p.key: _listing_handler(p.index) for p in published},
        )
        gate.start()
        loop = Refresher(regions, interval=settings.refresh_interval, metrics=metrics)
        loop.start()
        walks = [
            threading.Thread(
                target=resync_forever,
                args=(one,),
                kwargs={
                    "interval": settings.resync_interval,
                    "pause": settings.resync_pause,
                    "stopping": stopping,
                },
                name=f"instanceapi-resync-{number}",
                daemon=True,
            )
            for number, one in enumerate(published)
        ]
        for walk in walks:
            walk.start()
        while not stopping.is_set():
            if master_gone(1.0):
                log.info("refresher: the master is gone; exiting")
                break
        stopping.set()
        loop.stop()
        gate.stop()


def _listing_handler(index: PublishingIndex) -> Handler:
    def handle(after: float, full_since: str | None) -> None:
        index.listed_after(after, full_since=full_since)

    return handle


def main(argv: Sequence[str] | None = None) -> int:
    """Run the refresher; 2 on an invalid configuration."""
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as ex:
        print(f"instanceapi refresher: configuration error: {ex}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        serve(settings, stopping)
    except ConfigError as ex:
        print(f"instanceapi refresher: configuration error: {ex}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
