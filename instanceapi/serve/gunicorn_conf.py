"""Gunicorn settings for instanceapi, sectioned like Gunicorn's example config.

Used as ``gunicorn -c python:instanceapi.serve.gunicorn_conf`` (what ``instanceapi
serve`` runs) or through the top-level ``gunicorn.conf.py``. Every value comes
from the ``INSTANCEAPI_*`` settings, validated here so that a bad value stops
the master at start-up with a message naming the variable.
"""

import atexit
import os
import re
import shutil
import sys
import tempfile
from typing import Any

from instanceapi.config import ConfigError, Settings, merged_env, private_dir_problem

#: Directories this master made, removed when it exits (never one it was given).
_made: list[str] = []
_master = os.getpid()


@atexit.register
def _remove_made() -> None:
    """Remove the directories this master made (a temporary runtime directory).

    NOTE: atexit handlers are inherited by the forked workers; only the master
    (or a ``--check-config`` run) removes anything.
    """
    if os.getpid() == _master:
        for path in reversed(_made):
            shutil.rmtree(path, ignore_errors=True)


def _stop(message: str) -> None:
    sys.stderr.write(f"instanceapi: configuration error: {message}\n")
    raise SystemExit(2)


def _file_and_env() -> dict[str, str]:
    """Return the settings as the service reads them: INSTANCEAPI_CONFIG_FILE, then the env."""
    try:
        return merged_env(os.environ)
    except ConfigError as ex:
        _stop(str(ex))
        raise  # unreachable: _stop exits


#: INSTANCEAPI_RUNTIME_DIR and INSTANCEAPI_ACCESS_LOG may come from the config file.
_configured = _file_and_env()


def _shared_dir(variable: str, default: str | None) -> str:
    """Return a private directory for the workers' shared files, made before they fork.

    One that is given (environment or INSTANCEAPI_CONFIG_FILE) must already be
    private to this user (0700, ours): the workers trust what they find in it.
    """
    given = os.environ.get(variable) or _configured.get(variable)
    path = given or default or tempfile.mkdtemp(prefix="instanceapi-")
    if not given and default is None:
        _made.append(path)
    elif not os.path.exists(path):
        os.makedirs(path, mode=0o700)
        if not given:
            _made.append(path)
    problem = private_dir_problem(path)
    if problem:
        _stop(f"{variable}: {problem}")
    os.environ[variable] = path  # inherited by every worker
    return path


# NOTE: first of all. prometheus_client picks its value store (files, or memory)
# when first imported, and openstacksdk imports it while the settings are checked.
_runtime = _shared_dir("INSTANCEAPI_RUNTIME_DIR", None)
_metrics = _shared_dir("PROMETHEUS_MULTIPROC_DIR", os.path.join(_runtime, "metrics"))


def _load() -> Settings:
    try:
        settings = Settings.from_env(os.environ)
        from instanceapi.openstack import build_regions

        build_regions(settings)  # clouds.yaml and regions resolve; no network I/O
    except ConfigError as ex:
        _stop(str(ex))
    warning = settings.exposure_warning()
    if warning:
        sys.stderr.write(f"instanceapi: warning: {warning}\n")
    from instanceapi.http.app import use_master_settings

    use_master_settings(settings)  # the workers take these, inherited through fork
    return settings


_settings = _load()


# -- Server socket ------------------------------------------------------------
# Loopback by default: the answers reveal which instances exist. The nginx front
# (deploy/nginx/) serves the Satellite host over TLS; or set INSTANCEAPI_BIND.
bind = [_settings.bind]
# Slow clients queue here rather than in a worker.
backlog = 256
# The front proxy (deploy/nginx/) whose X-Forwarded-For names the client: Gunicorn
# and the app's allowlist trust that header from these addresses only (none by default).
forwarded_allow_ips = ",".join(str(net) for net in _settings.forwarded_allow)

# -- Worker processes ---------------------------------------------------------
# Each worker holds one Keystone session per target (its token is reused).
workers = _settings.workers
# Threads: a check waits on Nova, so one worker serves several checks at once,
# and the heartbeat keeps beating while a request thread waits on OpenStack.
worker_class = "gthread"
threads = 8
# Above the longest check: up to two UUID forms per target, each call bounded by
# INSTANCEAPI_TIMEOUT and its retries.
timeout = int(max(60, 4 * _settings.timeout * (_settings.retries + 1)))
# Let checks in flight finish on reload (HUP) and stop (TERM).
graceful_timeout = timeout
keepalive = 5
# A worker builds its own app after fork: no session or thread crosses a fork.
preload_app = False
wsgi_app = "instanceapi.http.wsgi:app"

# -- Limits ---------------------------------------------------------------------
# A /check URL is short; anything long is hostile or broken.
limit_request_line = 2048
limit_request_fields = 50
limit_request_field_size = 4096

# -- TLS --------------------------------------------------------------------------
# Optional: serve HTTPS directly (INSTANCEAPI_CERTFILE + INSTANCEAPI_KEYFILE).
certfile = _settings.certfile
keyfile = _settings.keyfile

# -- Logging --------------------------------------------------------------------
# Access log on stdout (the journal under systemd): one line per request, so per
# check: its uuid (the path), answer, time (%(M)s ms), where the answer came from
# (Instance-Source) and the request id the app echoes, to join with its own lines.
# Behind the front proxy %(h)s is the proxy: xff= is the client it forwarded.
accesslog = _configured.get("INSTANCEAPI_ACCESS_LOG") or "-"
access_log_format = (
    '%(h)s "%(r)s" %(s)s %(b)s %(M)sms source=%({instance-source}o)s '
    'rid=%({x-request-id}o)s xff=%({x-forwarded-for}i)s "%(a)s"'
)
errorlog = "-"
loglevel = _settings.log_level.lower()

# -- Process naming and control ----------------------------------------------------
proc_name = "instanceapi"
# Gunicorn 24+ opens a control socket under $HOME by default: one path shared by
# every instance, and not writable under systemd's ProtectHome. Signals suffice.
control_socket_disable = True

# -- Metrics across workers ----------------------------------------------------------
# prometheus_client's multiprocess recipe: workers write to files in one directory;
# a scrape reads them all. Emptied when the master starts, pruned when a worker dies.


#: The files prometheus_client's multiprocess mode writes: <kind>_<pid>.db.
_METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def on_starting(server: Any) -> None:
    """Start from empty shared files: our metrics, and absent verdicts (the clouds may differ).

    Only files this service writes, owned by this user, are removed: a
    directory given by PROMETHEUS_MULTIPROC_DIR may hold other things.
    """
    _remove_own(_metrics, _METRICS_FILE)
    _remove_own(_runtime, re.compile(r"absent-[0-9a-f]+\.sqlite3(-wal|-shm|-journal)?"))
    # A store left by an earlier run: its times are on a monotonic clock that a
    # reboot restarts, so its listings could look fresh. The refresher relists.
    _remove_own(_runtime, re.compile(r"store-[0-9a-f]{16}"), tree=True)


def _remove_own(directory: str, pattern: re.Pattern[str], *, tree: bool = False) -> None:
    for entry in os.scandir(directory):
        if (
            not pattern.fullmatch(entry.name)
            or entry.stat(follow_symlinks=False).st_uid != os.geteuid()
        ):
            continue
        if tree and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        elif not tree and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def on_reload(server: Any) -> None:
    """Re-read the settings for the new workers; keep the running ones if they are invalid.

    The workers take the settings the master validated (inherited through
    fork), so a token file broken at reload cannot make them fail to boot,
    which would stop the whole service.
    """
    from instanceapi.http.app import use_master_settings

    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as ex:
        server.log.error("reload: configuration error: %s; keeping the running settings", ex)
        return
    use_master_settings(settings)


def child_exit(server: Any, worker: Any) -> None:
    """Mark a dead worker's (or refresher's) live gauges as gone."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
