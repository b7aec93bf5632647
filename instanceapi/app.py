"""The application factory: wiring only, no I/O."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import falcon

from instanceapi.checker import Checker, TargetChecker
from instanceapi.config import Settings
from instanceapi.openapi import OpenAPIResource
from instanceapi.refresher import Refresher
from instanceapi.resources import (
    BulkCheckResource,
    CheckResource,
    HealthResource,
    MissingUUIDResource,
    ReadyResource,
    malformed_check_path,
)


def create_app(settings: Settings, *, checker: Checker | None = None) -> falcon.App:
    """Return the WSGI app for `settings`; `checker` may be injected (tests)."""
    checker = checker or build_checker(settings)
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route("/check/{raw}", CheckResource(checker))
    app.add_route("/check", MissingUUIDResource(BulkCheckResource(checker)))
    app.add_sink(malformed_check_path, r"^/check/")
    app.add_route("/healthz", HealthResource())
    app.add_route("/readyz", ReadyResource(checker))
    app.add_route("/openapi.json", OpenAPIResource())
    return app


def build_checker(settings: Settings) -> Checker:
    """Create a checker with one Keystone session per configured target (no network I/O)."""
    from instanceapi.openstack import build_targets

    targets = [
        TargetChecker(
            target,
            visibility_interval=settings.visibility_interval,
            resync_interval=settings.resync_interval,
            max_index_age=settings.index_max_age,
        )
        for target in build_targets(settings)
    ]
    return Checker(
        targets,
        absent_cache_size=settings.absent_cache_size,
        bulk_concurrency=settings.bulk_concurrency,
    )


def get_app(environ: Mapping[str, str] | None = None) -> falcon.App:
    """Build the production app from the environment, and start its index refresher.

    Gunicorn calls this in each worker after the fork (no preload), so every
    worker has its own sessions and its own refresher thread.
    """
    settings = Settings.from_env(os.environ if environ is None else environ)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    checker = build_checker(settings)
    Refresher(checker.targets, interval=settings.refresh_interval).start()
    return create_app(settings, checker=checker)
