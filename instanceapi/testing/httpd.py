"""A small threaded HTTP/1.1 (keep-alive) listener on 127.0.0.1 that can be taken down.

Applications are plain callables ``app(Request) -> Response``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.1"
MAX_BODY = 1 << 20
IDLE_TIMEOUT = 120.0  # seconds an idle keep-alive connection is kept
_current = threading.local()  # the connection a handler thread is answering


@dataclasses.dataclass(slots=True)
class Request:
    """One parsed HTTP request."""

    method: str
    path: str  # percent-decoded, without query
    query: str  # raw query string
    params: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    base_url: str  # "http://127.0.0.1:<port>"

    @property
    def target(self) -> str:
        """Path with query, as recorded in the request log."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def json(self) -> object:
        """Decoded JSON body; ValueError when it is not JSON."""
        return json.loads(self.body or b"null")


@dataclasses.dataclass(slots=True)
class Response:
    """What an application answers."""

    status: int
    body: object = None  # dict/list -> JSON; bytes -> raw; None -> empty
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        """Body bytes and headers including Content-Type."""
        headers = dict(self.headers)
        if self.body is None:
            return b"", headers
        if isinstance(self.body, bytes):
            headers.setdefault("Content-Type", "application/octet-stream")
            return self.body, headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body, separators=(",", ":")).encode(), headers


App = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on loopback
    server_version = "SimulatedOpenStack/1.0"
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging."""

    def setup(self) -> None:
        super().setup()
        self.server.owner.track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner.track(self.connection, add=False)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY or self.headers.get("Transfer-Encoding"):
            self.send_error(413 if length > MAX_BODY else 411)
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=unquote(split.path) or "/",
            query=split.query,
            params=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=self.server.owner.url,
        )
        _current.conn = self.connection
        try:
            response = self.server.owner.app(request)
        except Exception as exc:  # a bug in the simulation: still answer HTTP
            response = Response(500, {"error": {"code": 500, "message": repr(exc)}})
        finally:
            _current.conn = None
        if not self.server.owner.running:
            # This request took its own listener down: answer it, then hang up.
            self.close_connection = True
        payload, headers = response.encode()
        self.send_response(response.status)
        if self.close_connection:
            self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    owner: Listener

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up (or the listener going down) is normal here."""


class Listener:
    """One HTTP listener; ``set_down`` really closes (and later re-opens) the socket."""

    def __init__(self, app: App, port: int = 0, name: str = "") -> None:
        self.app = app
        self.name = name
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """True while accepting connections."""
        return self._server is not None

    def track(self, conn: socket.socket, *, add: bool) -> None:
        """Remember open connections so going down can cut them."""
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def start(self) -> None:
        """Bind (port 0 picks a free one) and serve in a daemon thread."""
        if self._server is not None:
            return
        server = _Server((HOST, self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"simcloud-{self.name or self.port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()

    def stop(self) -> None:
        """Stop accepting, close the socket and cut open connections."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        mine = getattr(_current, "conn", None)
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            if conn is mine:
                continue
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def set_down(self, down: bool) -> None:
        """Go down (connection refused) or come back on the same port."""
        if down:
            self.stop()
        else:
            self.start()
