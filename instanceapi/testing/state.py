"""Everything the listeners share, behind one lock; plus the fault-injecting wrapper."""

from __future__ import annotations

import dataclasses
import http
import threading
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

from instanceapi.testing.compute import Region
from instanceapi.testing.httpd import App, Request, Response
from instanceapi.testing.identity import Identity
from instanceapi.testing.model import Clock, Fault, RequestRecord, Stats

GARBAGE = b"<html><body><h1>502 Bad Gateway</h1>upstream says hi</body></html>\n"


@dataclasses.dataclass(slots=True)
class Config:
    """Tunables of the simulated cloud."""

    max_limit: int = 1000
    token_ttl: float = 3600.0
    nova_latency: float = 0.0
    per_server_latency: float = 0.0
    #: Nova's ``[api] list_records_by_skipping_down_cells`` (default True); False makes
    #: every listing that would skip a down cell answer 500.
    skip_down_cells: bool = True


class CloudState:
    """Identity, regions, faults, counters; ``lock`` guards identity, regions and faults."""

    def __init__(self, regions: tuple[str, ...], max_microversion: str, config: Config) -> None:
        if not regions:
            raise ValueError("at least one region is needed")
        self.lock = threading.RLock()
        self.clock = Clock()
        self.identity = Identity()
        self.regions = {name: Region(name, max_microversion) for name in regions}
        self.faults: dict[str, Fault] = {}
        self.stats = Stats()
        self.config = config
        self.stopping = threading.Event()
        self.taken_ids: set[str] = set()
        self.keystone_url = ""  # "http://127.0.0.1:<port>", set when listening
        self.nova_urls: dict[str, str] = {}  # region -> "http://127.0.0.1:<port>/v2.1"

    @property
    def first_region(self) -> str:
        """Name of the default region."""
        return next(iter(self.regions))

    def region(self, name: str | None) -> Region:
        """The region called ``name`` (None: the first); KeyError if unknown."""
        return self.regions[name or self.first_region]

    @staticmethod
    def fault_key(service: str, region: str | None) -> str:
        """Key of a listener in ``faults``."""
        return "keystone" if service == "keystone" else f"nova@{region}"

    def fault(self, service: str, region: str | None) -> Fault:
        """Current fault of a listener (a copy; empty when none)."""
        with self.lock:
            return dataclasses.replace(self.faults.get(self.fault_key(service, region), Fault()))

    def sleep(self, seconds: float) -> None:
        """Sleep, cut short when the cloud stops."""
        if seconds > 0:
            self.stopping.wait(seconds)


def keystone_error(status: int, message: str | None = None) -> dict[str, object]:
    """Keystone's (and keystonemiddleware's) error body."""
    phrase = http.HTTPStatus(status).phrase
    default = {
        401: "The request you have made requires authentication.",
        500: "An unexpected error prevented the server from fulfilling your request.",
    }.get(status, phrase)
    return {"error": {"code": status, "message": message or default, "title": phrase}}


def request_id_headers() -> dict[str, str]:
    """A fresh request id, as OpenStack services send it."""
    return {"x-openstack-request-id": f"req-{uuid.uuid4()}"}


#: What a listing page carries under the bad_item fault: text where a server should be.
BAD_ITEM = "id=0; not a server"


def _listing_faults(fault: Fault, listing: bool, app: App, request: Request) -> Response:
    """Answer, replaying page 1 (marker ignored) or spoiling a page, as the fault says."""
    if listing and fault.replay_pages:
        params = {k: v for k, v in request.params.items() if k != "marker"}
        query = urlencode(params, doseq=True)
        request = dataclasses.replace(request, params=params, query=query)
    response = app(request)
    servers = response.body.get("servers") if isinstance(response.body, dict) else None
    if listing and fault.bad_item and isinstance(servers, list):
        servers.insert(0, BAD_ITEM)
    return response


def guarded(
    state: CloudState,
    service: str,
    region: str | None,
    app: App,
    classify: Callable[[Request], str],
    error_body: Callable[[int], dict[str, object]],
) -> App:
    """Wrap ``app``: count the request, apply the listener's fault, log the outcome."""

    def handle(request: Request) -> Response:
        state.stats.count(service, classify(request), region)
        fault = state.fault(service, region)
        state.sleep(fault.delay)
        if fault.status:
            headers = request_id_headers()
            if fault.status == 503:
                headers["Retry-After"] = str(fault.retry_after)
            response = Response(fault.status, error_body(fault.status), headers)
        elif fault.garbage:
            response = Response(200, GARBAGE, {"Content-Type": "application/json"})
        else:
            response = _listing_faults(fault, classify(request) == "list", app, request)
        state.stats.record(RequestRecord(service, request.method, request.target, response.status))
        return response

    return handle
