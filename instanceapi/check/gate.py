"""The listing gate: a worker asks the refresher for a listing read after its question.

The listing rule needs "a listing that started after the question". Workers
never list; they ask the refresher over a Unix socket in the store's private
directory and then verify in the published state that such a listing exists:
the reply itself is never taken as evidence. Concurrent questions share one
poll (the refresher's index lock, see PublishingIndex.listed_after).

Protocol: one JSON line each way. Request ``{"region": key, "after": t,
"full_since": s}`` with `t` on the host's monotonic clock (one clock for
every process); reply ``{"ok": true}`` or ``{"ok": false, "reason": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

#: A listing request: (after, full_since) -> None, or raise an exception whose str is the reason.
Handler = Callable[[float, str | None], None]
MAX_REQUEST = 4096


class GateError(Exception):
    """No listing after the question could be had through the gate (the reason is the text)."""


@contextlib.contextmanager
def _short(path: Path) -> Iterator[str]:
    """Yield a path to `path` short enough for sun_path (108 bytes), via the directory's fd."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def ask(path: Path, region: str, after: float, full_since: str | None, timeout: float) -> None:
    """Ask the refresher for a listing of `region` that started at or after `after`.

    Raises GateError when the refresher cannot be reached, does not answer
    within `timeout`, or says the listing failed.
    """
    request = json.dumps({"region": region, "after": after, "full_since": full_since})
    try:
        with _short(path) as address, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(request.encode() + b"\n")
            with sock.makefile("rb") as replies:
                line = replies.readline(MAX_REQUEST)
    except TimeoutError:
        raise GateError(f"the refresher did not answer within {timeout:.0f}s") from None
    except OSError as ex:
        raise GateError(f"the refresher is unreachable ({ex.strerror or ex})") from None
    try:
        reply = json.loads(line)
        ok, reason = reply["ok"], reply.get("reason")
    except (ValueError, KeyError, TypeError):
        raise GateError("the refresher answered oddly") from None
    if ok is not True:
        raise GateError(str(reason or "the listing failed"))


class GateServer:
    """The refresher's side: one thread per waiting worker, each answered when its listing is in."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by a refresher that was killed
        with _short(path) as address:
            self._server = _Server(address, _Request)
        self._server.handlers = dict(handlers)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="instanceapi-gate", daemon=True
        )

    def start(self) -> None:
        """Accept requests in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and remove the socket."""
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handlers: dict[str, Handler]


class _Request(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            request = json.loads(self.rfile.readline(MAX_REQUEST))
            handler = self.server.handlers[request["region"]]
            after, full_since = float(request["after"]), request["full_since"]
            if full_since is not None and not isinstance(full_since, str):
                raise TypeError("full_since")
        except (ValueError, KeyError, TypeError):
            self._reply({"ok": False, "reason": "malformed request"})
            return
        try:
            handler(after, full_since)
        except Exception as ex:  # the reason goes back to the worker, which answers 500
            self._reply({"ok": False, "reason": f"the listing failed: {ex}"})
            return
        self._reply({"ok": True})

    def _reply(self, reply: Mapping[str, object]) -> None:
        with contextlib.suppress(OSError):  # the worker gave up waiting
            self.wfile.write(json.dumps(reply).encode() + b"\n")
