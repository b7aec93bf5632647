"""One cloud/region of Nova, behind a keystoneauth1 session: lookups and listings.

Everything above this package sees ``ServerRecord``s (never Nova's JSON),
``None`` for "Nova answered 404", and ``UpstreamError`` for every other outcome.
"""

from __future__ import annotations

import email.utils
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import requests
from keystoneauth1 import access as ksa_access
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session
from novaclient import api_versions
from novaclient import client as nova_client
from novaclient import exceptions as nova_exc

from instanceapi.openstack.breaker import Breaker, CircuitOpen
from instanceapi.openstack.records import MalformedRecord, ServerRecord, parse_page, parse_server

log = logging.getLogger(__name__)

#: Below 2.69 Nova silently leaves out servers of unreachable cells from listings.
WANTED_MICROVERSION = api_versions.APIVersion("2.69")
LISTING_PAGE = 1000
#: A listing longer than this many pages is taken for one that never ends (a
#: proxy replaying pages): 10 million servers at Nova's default page of 1,000.
MAX_LISTING_PAGES = 10_000
_FAILURES: tuple[type[BaseException], ...] = (
    ksa_exc.ClientException,
    nova_exc.ClientException,
    # A 200 whose body is not the JSON Nova promises surfaces as one of these.
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)


#: Told of every upstream response: (service, target, method, status, seconds).
#: status is "error" when no response came (connection refused, timeout).
Observer = Callable[[str, str, str, str, float], None]


def ignore(service: str, target: str, method: str, status: str, seconds: float) -> None:
    """The default observer."""


class UpstreamError(Exception):
    """OpenStack could not be asked, or answered something we cannot trust."""

    def __init__(self, name: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{name}: {reason}")
        #: The region's name (``cloud/Region``) that failed.
        self.name = name
        self.reason = reason
        self.status = status


class UnexpectedBody(UpstreamError):
    """``GET /servers/{id}`` answered 200 with something other than that server's record."""


@dataclass(frozen=True)
class Identity:
    """Who the service is to Nova: the token's project and roles."""

    project_id: str
    roles: frozenset[str]


class Compute(Protocol):
    """What the checker needs from one cloud/region; fakes implement this too."""

    name: str
    cloud: str
    region: str | None

    def show(self, uuid: str) -> ServerRecord | None:
        """Return the server, or None when Nova answers 404 for this id.

        A 200 that is not this server's record (another id, no status, not a
        server object) raises UnexpectedBody.
        """

    def list_servers(
        self,
        *,
        changes_since: str | None = None,
        page_limit: int = LISTING_PAGE,
        max_pages: int | None = None,
    ) -> Iterator[list[ServerRecord]]:
        """Yield every page of the all-project detail listing."""

    def unfiltered_page(self, *, detail: bool) -> list[ServerRecord]:
        """Return the one page of ``GET /servers[/detail]?all_tenants=1``, nothing else asked."""

    def identity(self) -> Identity:
        """Return the token's project and roles, authenticating if needed."""

    def microversion(self) -> str:
        """Return the negotiated compute microversion."""

    def compute_regions(self, *, fresh: bool = False) -> frozenset[str]:
        """Return the catalog's regions with a compute endpoint for our interface."""

    def ping_identity(self) -> None:
        """Raise UpstreamError unless Keystone answers (cheap, no token issued)."""

    def nova_time(self) -> float | None:
        """Return Nova's clock as of its latest answer (its Date header), if known."""


class NovaRegion:
    """One cloud/region: a keystoneauth Session reused for every request."""

    def __init__(
        self,
        *,
        cloud: str,
        region: str | None,
        session: ksa_session.Session,
        interface: str,
        retries: int,
        observe: Observer = ignore,
        breaker: Breaker | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.cloud = cloud
        self.region = region
        self.name = f"{cloud}/{region}" if region else cloud
        self._session = session
        self._interface = interface
        self._retries = retries
        self._observe = observe
        self._client: Any = None
        self._wall = wall or _wall_now
        self._client_made_at = 0.0
        self._lock = threading.Lock()
        #: One authentication at a time, and none while Keystone is being left alone.
        self._auth_lock = threading.Lock()
        self._breaker = breaker or Breaker()
        self.endpoint: str | None = None
        self._nova_time: float | None = None
        self.offered_microversion: str | None = None
        self.max_listing_pages = MAX_LISTING_PAGES
        auth_url = str(getattr(session.auth, "auth_url", "") or "")
        self._identity_url = auth_url.rstrip("/")
        prefix = self._identity_url.removesuffix("/v3").removesuffix("/v2.0")
        # Keystone's URLs: the prefix, then a path or the end (not :50001 for :5000).
        self._identity = re.compile(re.escape(prefix) + r"(?=/|$|[\s'\")])") if prefix else None
        session.session.hooks["response"].append(self._on_response)

    # -- public interface -------------------------------------------------

    def show(self, uuid: str) -> ServerRecord | None:
        """Return the server as Nova shows it, or None on Nova's own "not found".

        NOTE: only Nova's itemNotFound for this very id counts. A 404 from a
        wrong endpoint path, a proxy or a load balancer says nothing about the
        instance, and reading it as absence would delete live hosts' records.
        """
        client = self._nova()
        self._authenticated()
        try:
            server = once_more_on_401(lambda: client.servers.get(uuid))
            shown = dict(server.to_dict())
        except nova_exc.NotFound as ex:
            if is_instance_not_found(ex, uuid):
                return None
            raise UpstreamError(
                self.name,
                "GET /servers/{id} answered 404 without Nova's itemNotFound body "
                "(is the compute endpoint right?)",
                status=404,
            ) from ex
        except _FAILURES as ex:
            raise self._error("GET /servers/{id}", ex) from ex
        return self._record_of(uuid, shown)

    def _record_of(self, uuid: str, shown: dict[str, Any]) -> ServerRecord:
        """Return the record GET /servers/{id} answered; UnexpectedBody if it is not uuid's."""
        try:
            record = parse_server(shown)
        except MalformedRecord as ex:
            raise UnexpectedBody(
                self.name, f"GET /servers/{{id}} answered a server that {ex}"
            ) from None
        if record.id != uuid.lower() or record.status is None:
            raise UnexpectedBody(
                self.name, "GET /servers/{id} answered another server's record, or no status"
            )
        return record

    def list_servers(
        self,
        *,
        changes_since: str | None = None,
        page_limit: int = LISTING_PAGE,
        max_pages: int | None = None,
    ) -> Iterator[list[ServerRecord]]:
        """Yield every page of ``GET /servers/detail?all_tenants=1``.

        Pages are followed while Nova offers a ``next`` link. A page that fails
        raises, so a caller never mistakes half a listing for the whole.
        """
        params: dict[str, str] = {"all_tenants": "1", "limit": str(page_limit)}
        if changes_since:
            params["changes-since"] = changes_since
        markers: set[str] = set()
        bound = self.max_listing_pages if max_pages is None else max_pages
        for pages in range(1, bound + 1):
            page, more, marker = self._list_page(params)
            yield page
            if not more or not marker or pages == max_pages:
                return
            if marker in markers:
                raise UpstreamError(
                    self.name,
                    f"GET /servers/detail did not advance: page {pages + 1} would start "
                    f"again after {marker} (a marker ignored, or a page replayed)",
                )
            markers.add(marker)
            params["marker"] = marker
        raise UpstreamError(
            self.name,
            f"GET /servers/detail still offered a next page after {bound} pages: "
            "taken for a listing that never ends",
        )

    def unfiltered_page(self, *, detail: bool) -> list[ServerRecord]:
        """Return the first page of the all-project listing with no parameter but all_tenants.

        NOTE: from 2.69 it is the only listing that shows servers of unreachable
        cells (as UNKNOWN records, first); every listing with limit, marker,
        changes-since or another filter silently skips them (shared facts).
        """
        path = "/servers/detail" if detail else "/servers"
        return self._list_page({"all_tenants": "1"}, path)[0]

    def identity(self) -> Identity:
        """Return the token's project and roles (authenticating if needed)."""
        access = self._authenticated()
        return Identity(project_id=access.project_id or "", roles=frozenset(access.role_names))

    def _authenticated(self) -> Any:
        """Return the token's access info, asking Keystone only if the breaker allows it.

        Serialised: when the token must be renewed, one thread asks Keystone and
        the others reuse its token, or see the breaker it opened.
        """
        with self._auth_lock:
            try:
                self._breaker.check()
            except CircuitOpen as ex:
                raise UpstreamError(self.name, f"Keystone authentication paused: {ex}") from None
            try:
                access = self._session.auth.get_access(self._session)  # type: ignore[union-attr]
            except _FAILURES as ex:
                raise self._error("Keystone authentication", ex) from ex
            self._breaker.succeeded()
            return access

    def compute_regions(self, *, fresh: bool = False) -> frozenset[str]:
        """Return the regions of the catalog that have a compute endpoint for our interface.

        From the current token's catalog; `fresh` asks Keystone for the catalog as
        of now (validating our own token), so that a region added since the token
        was issued shows at once. A catalog that cannot be read raises UpstreamError.
        """
        access = self._authenticated()
        try:
            if fresh:
                access = self._revalidated(access) or access
            found = access.service_catalog.get_endpoints_data(
                service_type="compute", interface=self._interface
            )
        except _FAILURES as ex:
            raise self._error("reading the service catalog", ex) from ex
        return frozenset(str(e.region_name or "") for e in found.get("compute", []))

    def _revalidated(self, access: Any) -> Any:
        """Return our token as Keystone validates it now (its catalog as of now), or None."""
        try:
            response = self._session.get(
                f"{self._identity_url}/auth/tokens",
                headers={"X-Subject-Token": access.auth_token},
                connect_retries=0,
            )
            return ksa_access.create(resp=response)
        except _FAILURES as ex:
            log.info("%s: catalog not re-read (%s); using the token's", self.name, describe(ex))
            return None

    def microversion(self) -> str:
        """Return the compute microversion this region talks."""
        return str(self._nova().api_version.get_string())

    @property
    def fingerprint(self) -> str:
        """Return what identifies this region's cloud: name, Keystone URL, interface."""
        return f"{self.name}|{self._identity_url}|{self._interface}"

    def ping_identity(self) -> None:
        """Raise UpstreamError unless Keystone answers its version document."""
        try:
            self._session.get(self._identity_url, authenticated=False, connect_retries=0)
        except _FAILURES as ex:
            # Not an authentication: no reason to pause authenticating.
            raise self._error("Keystone version discovery", ex, pause=False) from ex

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        url = response.request.url or ""
        service = "identity" if self._is_identity(url) else "compute"
        if service == "compute":
            self._note_clock(response.headers.get("Date"))
        self._observe(
            service,
            self.name,
            response.request.method or "GET",
            str(response.status_code),
            response.elapsed.total_seconds(),
        )

    # -- internals ----------------------------------------------------------

    def _list_page(
        self, params: dict[str, str], path: str = "/servers/detail"
    ) -> tuple[list[ServerRecord], bool, str | None]:
        """Return a page's records, whether Nova offers a next page, and its marker.

        The marker is the last server's id exactly as Nova wrote it (None: an empty page).
        """
        url = f"{path}?" + urllib.parse.urlencode(params)
        self._authenticated()
        try:
            _resp, body = once_more_on_401(lambda: self._nova().client.get(url))
            servers = body["servers"]
            links = body.get("servers_links") or []
            more = any(isinstance(link, dict) and link.get("rel") == "next" for link in links)
        except _FAILURES as ex:
            raise self._error(f"GET {path}", ex) from ex
        try:
            records = parse_page(servers)
        except MalformedRecord as ex:
            raise UpstreamError(self.name, f"GET {path} answered a malformed page: {ex}") from None
        return records, more, str(servers[-1]["id"]) if servers else None

    def _nova(self) -> Any:
        """Return the novaclient client, negotiating the microversion once."""
        with self._lock:
            if self._client is None:
                self._client = self._negotiate()
                self._client_made_at = self._wall()
            elif self._wall() < self._client_made_at:
                # NOTE: keystoneauth's Adapter (novaclient's SessionClient) starts a
                # rate timer at time.time() when made, and every request waits until
                # the wall clock is past it: after an NTP step back, every Nova call
                # would sleep until the clock catches up. A new adapter starts anew.
                log.warning("%s: the wall clock stepped back; new compute adapter", self.name)
                self._client = self._make_client(self._client.api_version)
                self._client_made_at = self._wall()
            return self._client

    def _negotiate(self) -> Any:
        probe = self._make_client(api_versions.APIVersion("2.1"))
        self._authenticated()
        try:
            data = probe.client.get_endpoint_data()
        except _FAILURES as ex:
            raise self._error("compute version discovery", ex) from ex
        if data is None or data.max_microversion is None:
            # The endpoint's URL goes to the log only: answers carry no reconnaissance.
            where = data.url if data is not None else "the catalog's compute endpoint"
            log.warning("%s: compute version discovery failed at %s", self.name, where)
            raise UpstreamError(
                self.name,
                "compute version discovery failed: unreachable, or no microversions",
            )
        offered = api_versions.APIVersion(f"{data.max_microversion[0]}.{data.max_microversion[1]}")
        self.endpoint, self.offered_microversion = data.url, offered.get_string()
        if offered >= WANTED_MICROVERSION:
            return self._make_client(WANTED_MICROVERSION)
        log.warning(
            "%s: Nova offers microversion %s only; below 2.69 listings silently omit servers "
            "of unreachable cells, so the listing rule cannot prove absence here",
            self.name,
            offered.get_string(),
        )
        return self._make_client(offered)

    def _make_client(self, version: api_versions.APIVersion) -> Any:
        return nova_client.Client(
            version,
            session=self._session,
            region_name=self.region,
            endpoint_type=self._interface,
            connect_retries=self._retries,
            status_code_retries=self._retries,
            retriable_status_codes=[503],
        )

    def _error(self, what: str, ex: BaseException, *, pause: bool = True) -> UpstreamError:
        status = getattr(ex, "http_status", None) or getattr(ex, "code", None)
        status = status if isinstance(status, int) else None
        keystone = self._from_keystone(ex)
        if isinstance(ex, ksa_exc.ConnectionError):
            self._observe("identity" if keystone else "compute", self.name, "", "error", 0.0)
        if keystone:
            # Keystone's URL goes to the log only: answers carry no reconnaissance.
            log.warning(
                "%s: Keystone at %s failed: %s", self.name, self._identity_url, describe(ex)
            )
            what = f"Keystone, needed for {what},"
        reason = f"{what} failed: {describe(ex)}"
        if pause and (keystone or status == 401):
            # Refused credentials (or a failing Keystone): stop asking for a while.
            self._breaker.failed(reason)
        return UpstreamError(self.name, reason, status=status)

    def nova_time(self) -> float | None:
        """Return Nova's clock as of its latest answer (its Date header), if known."""
        return self._nova_time

    def _note_clock(self, date: str | None) -> None:
        try:
            self._nova_time = email.utils.parsedate_to_datetime(date or "").timestamp()
        except (TypeError, ValueError):
            return

    def _from_keystone(self, ex: BaseException) -> bool:
        """Return True if the failure came from Keystone (e.g. while renewing the token)."""
        return self._is_identity(str(getattr(ex, "url", None) or ex))

    def _is_identity(self, text: str) -> bool:
        """Return True if `text` is, or mentions, one of Keystone's URLs."""
        return self._identity is not None and self._identity.search(text) is not None


T = TypeVar("T")


def _wall_now() -> float:
    """Return time.time(), looked up at each call (the clock keystoneauth's adapters use)."""
    return time.time()


def once_more_on_401(call: Callable[[], T]) -> T:
    """Call, and call again once if Nova answers 401.

    NOTE: keystoneauth re-authenticates after a 401 only for the first of
    several requests in flight (invalidate() is False for the others, the token
    being gone already); they would fail on a healthy cloud. The second call
    picks up the renewed token; a second 401 is a real refusal.
    """
    try:
        return call()
    except nova_exc.Unauthorized:
        return call()


_NOT_FOUND = re.compile(r"Instance (\S+) could not be found\.?")


def is_instance_not_found(ex: nova_exc.NotFound, uuid: str) -> bool:
    """Return True if a 404 carries Nova's InstanceNotFound message for `uuid`."""
    found = _NOT_FOUND.fullmatch(str(getattr(ex, "message", "") or "").strip())
    return found is not None and found.group(1).lower() == uuid


def describe(ex: BaseException) -> str:
    """Return a short, secret-free description of a client failure."""
    name = type(ex).__name__
    if isinstance(ex, ksa_exc.ConnectTimeout | ksa_exc.ConnectFailure):
        return f"{name} (unreachable or timed out)"
    if isinstance(ex, ksa_exc.HttpError | nova_exc.ClientException):
        code = getattr(ex, "http_status", None) or getattr(ex, "code", None)
        return f"HTTP {code} {name}"
    if isinstance(ex, ksa_exc.EndpointNotFound):
        return "no compute endpoint for this region/interface in the catalog"
    return f"unexpected answer ({name})"
