"""The application factory: wiring only, no I/O."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import falcon

from instanceapi import logs
from instanceapi.check.budget import UpstreamBudget
from instanceapi.check.catalog import coverages
from instanceapi.check.checker import Checker, Overloaded
from instanceapi.check.refresher.loop import Refresher
from instanceapi.check.region import RegionChecker
from instanceapi.check.shared_index import SharedIndex, SharedVisibility, layout_for
from instanceapi.check.store.absent import SharedAbsentCache
from instanceapi.check.store.layout import StoreLayout
from instanceapi.config import ConfigError, Settings
from instanceapi.http.bulk import BulkCheckResource
from instanceapi.http.check import CheckResource, MalformedCheckPath, MissingUUIDResource
from instanceapi.http.errors import overloaded, serialize_error
from instanceapi.http.health import HealthResource, ReadyResource
from instanceapi.http.metrics import MetricsResource
from instanceapi.http.middleware import AccessControl, HostCheck, RequestContext, add_upstream_time
from instanceapi.http.openapi import OpenAPIResource
from instanceapi.metrics import Metrics
from instanceapi.openstack import NovaRegion, Observer

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, checker: Checker | None = None, metrics: Metrics | None = None
) -> falcon.App[falcon.Request, falcon.Response]:
    """Return the WSGI app for `settings`; `checker` and `metrics` may be injected (tests)."""
    metrics = metrics or Metrics()
    checker = checker or build_checker(settings, metrics)
    middleware: list[Any] = [RequestContext()]
    if settings.allowed_hosts:
        middleware.append(HostCheck(settings.allowed_hosts))
    guarded = bool(settings.api_tokens or settings.allow_networks)
    if guarded:
        middleware.append(
            AccessControl(
                settings.api_tokens,
                settings.allow_networks,
                forwarded_allow=settings.forwarded_allow,
            )
        )
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Overloaded, overloaded)
    app.add_route("/check/{raw}", CheckResource(checker, metrics))
    app.add_route("/check", MissingUUIDResource(BulkCheckResource(checker, metrics), metrics))
    app.add_sink(MalformedCheckPath(metrics), r"^/check/")
    app.add_route("/healthz", HealthResource())
    # Readiness detail (cloud/region names, counts, reasons) only behind access control:
    # an open service tells anyone only whether it is ready (doctor tells the rest).
    app.add_route("/readyz", ReadyResource(checker, detail=guarded))
    app.add_route("/metrics", MetricsResource(metrics, checker))
    app.add_route("/openapi.json", OpenAPIResource())
    return app


def upstream_observer(metrics: Metrics) -> Observer:
    """Return the callback that counts and times every request sent to OpenStack."""

    def observe(service: str, target: str, method: str, status: str, seconds: float) -> None:
        metrics.upstream_requests.labels(service, target, status).inc()
        if status == "error":
            return
        metrics.upstream_seconds.labels(service, target).observe(seconds)
        add_upstream_time(seconds)
        if service == "identity" and method == "POST" and status == "201":
            metrics.token_renewals.labels(target).inc()

    return observe


def build_checker(
    settings: Settings, metrics: Metrics | None = None, *, from_refresher: bool = False
) -> Checker:
    """Create a checker with one Keystone session per configured region (no network I/O).

    With `from_refresher` (Gunicorn workers), the index and the absence rule
    are the refresher's, read from the store in the runtime directory; without
    (the CLI, tests), this process keeps its own index in memory.
    """
    from instanceapi.openstack import build_regions

    metrics = metrics or Metrics()
    observe = upstream_observer(metrics)
    novas = build_regions(settings, observe)
    covering = coverages(novas, settings.exclude_regions)
    store = (
        layout_for(settings.runtime_dir, [n.fingerprint for n in novas])
        if settings.runtime_dir
        else None
    )
    if from_refresher and store is None:
        raise ConfigError("INSTANCEAPI_RUNTIME_DIR", "workers read the refresher's index there")
    regions = [
        RegionChecker(
            nova,
            visibility_interval=settings.visibility_interval,
            resync_interval=settings.resync_interval,
            max_index_age=settings.index_max_age,
            coverage=covering[nova.cloud],
            **(_follow(nova, store, settings) if from_refresher and store else {}),
        )
        for nova in novas
    ]
    if store:
        store.create()
    shared = (
        SharedAbsentCache(store.absent, settings.absent_cache_size, ttl=settings.absent_cache_ttl)
        if store
        else None
    )
    return Checker(
        regions,
        shared=shared,
        absent_cache_size=settings.absent_cache_size,
        absent_ttl=settings.absent_cache_ttl,
        on_conflict=metrics.absence_conflicts.inc,
        bulk_concurrency=settings.bulk_concurrency,
        budget=UpstreamBudget(
            rate=settings.upstream_rate,
            burst=settings.upstream_burst,
            concurrency=settings.max_live_lookups,
        ),
        bulk_max_live=settings.bulk_max_live,
    )


def _follow(nova: NovaRegion, store: StoreLayout, settings: Settings) -> dict[str, Any]:
    """Return the RegionChecker arguments that make it read the refresher's index and rule."""
    index = SharedIndex(
        nova.name,
        store,
        nova.fingerprint,
        gate_timeout=settings.timeout * (settings.retries + 1),
    )
    interval = settings.visibility_interval
    return {
        "index": index,
        "visibility": lambda tracker: SharedVisibility(index, tracker, interval=interval),
    }


#: The settings the Gunicorn master validated (at start, and at each good reload),
#: inherited by its workers through fork.
_from_master: list[Settings] = []


def use_master_settings(settings: Settings) -> None:
    """Record the master's validated settings for the workers it forks from now on."""
    _from_master[:] = [settings]


def get_app(
    environ: Mapping[str, str] | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the production app from the environment, and start following the refresher.

    Gunicorn calls this in each worker after the fork (no preload), so every
    worker has its own sessions. The index is the refresher process's (one per
    service, see instanceapi.check.refresher); each worker's thread only follows
    what it publishes (and reconciles cached absences with it). Under our
    Gunicorn config the worker takes the master's validated settings instead
    of reading them again: a file broken since (at a reload) cannot stop it.
    """
    if environ is None and _from_master:
        settings = _from_master[0]
    else:
        settings = Settings.from_env(os.environ if environ is None else environ)
    logs.configure(settings.log_level, settings.log_format)
    excluded = ", ".join(f"{s.cloud}/{s.region}" for s in settings.exclude_regions)
    log.info("regions excluded (INSTANCEAPI_EXCLUDE_REGIONS): %s", excluded or "none")
    metrics = Metrics()
    checker = build_checker(settings, metrics, from_refresher=True)
    Refresher(
        checker.regions,
        interval=settings.refresh_interval,
        metrics=metrics,
        after_refresh=checker.reconcile,
    ).start()
    return create_app(settings, checker=checker, metrics=metrics)
