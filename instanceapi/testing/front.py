"""Run the shipped nginx front (deploy/nginx/) on loopback, in front of a test service.

The site files are used as shipped: only their site-specific values (listen port,
upstream address, certificate paths, log and include directories) are replaced,
and each must be found, so a test always exercises the real directives. nginx
runs in the foreground, as a child of the caller, with a private prefix.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from instanceapi.testing.harness import terminate
from instanceapi.testing.pki import Issued

SITE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
SITE = "instanceapi.conf"
MTLS = "instanceapi-mtls.conf"
_MAIN = """\
{user}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    include {prefix}/conf.d/*.conf;
}}
"""


class FrontError(RuntimeError):
    """nginx did not start; the message carries its log."""


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace each shipped value by the test's; a value not found is an error."""
    for shipped, local in values.items():
        if shipped not in text:
            raise FrontError(f"the shipped nginx file no longer has {shipped!r}")
        text = text.replace(shipped, local)
    return text


def nginx_path() -> str | None:
    """Return the nginx executable (it lives in /usr/sbin, not always on PATH), or None."""
    return shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class NginxFront:
    """nginx with the shipped site, on 127.0.0.1:`port` (TLS), proxying to `upstream`.

    ``client_ca``: also install the shipped mutual-TLS file, trusting that CA.
    """

    def __init__(
        self,
        upstream: str,
        server: Issued,
        *,
        client_ca: Path | None = None,
        workers: int = 1,
        startup_timeout: float = 15.0,
    ) -> None:
        self._upstream = upstream
        self._server = server
        self._client_ca = client_ca
        self._workers = workers
        self._startup_timeout = startup_timeout
        self.prefix = Path(tempfile.mkdtemp(prefix="instanceapi-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> NginxFront:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the front's base URL."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> str:
        """Return what nginx logged so far (start-up and errors)."""
        return "".join(
            path.read_text(errors="replace")
            for path in sorted((self.prefix / "logs").glob("*error*"))
        )

    @property
    def access_log(self) -> str:
        """Return the site's access log so far."""
        path = self.prefix / "logs" / "instanceapi.access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Write the configuration and start nginx; retry on a port taken meanwhile."""
        nginx = nginx_path() or "nginx"
        for _ in range(3):
            self.port = free_port()
            self._write_config()
            command = [nginx, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")]
            command += ["-e", str(self.prefix / "logs" / "error.log"), "-g", "daemon off;"]
            self.process = subprocess.Popen(  # noqa: S603 - the system's nginx, our config
                command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            if self._wait_until_listening(self.process):
                return
        raise FrontError(f"nginx did not start:\n{self.error_log}")

    def stop(self) -> None:
        """Stop nginx (TERM: fast shutdown) and remove its prefix."""
        if self.process is not None:
            terminate(self.process)
        shutil.rmtree(self.prefix, ignore_errors=True)

    def _write_config(self) -> None:
        for sub in ("logs", "tmp", "conf.d", "site.d"):
            (self.prefix / sub).mkdir(exist_ok=True)
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        main = _MAIN.format(user=user, workers=self._workers, prefix=self.prefix)
        (self.prefix / "nginx.conf").write_text(main)
        site = render((SITE_DIR / SITE).read_text(), self._site_values())
        (self.prefix / "conf.d" / SITE).write_text(site)
        if self._client_ca is not None:
            ca = "/etc/pki/tls/certs/instanceapi-client-ca.crt"
            mtls = render((SITE_DIR / MTLS).read_text(), {ca: str(self._client_ca)})
            (self.prefix / "site.d" / "mtls.conf").write_text(mtls)

    def _site_values(self) -> dict[str, str]:
        return {
            "listen 443 ssl;": f"listen 127.0.0.1:{self.port} ssl;",
            "server 127.0.0.1:8080;": f"server {self._upstream};",
            "/etc/pki/tls/certs/instanceapi.crt": str(self._server.cert),
            "/etc/pki/tls/private/instanceapi.key": str(self._server.key),
            "/etc/nginx/instanceapi.d/": f"{self.prefix}/site.d/",
            "/var/log/nginx/": f"{self.prefix}/logs/",
        }

    def _wait_until_listening(self, process: subprocess.Popen[bytes]) -> bool:
        """Return True once the port accepts; False when nginx exited (port taken)."""
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                if "Address already in use" in self.error_log:
                    return False
                raise FrontError(f"nginx exited with {process.returncode}:\n{self.error_log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        terminate(process)
        raise FrontError(f"nginx did not listen on {self.port}:\n{self.error_log}")
