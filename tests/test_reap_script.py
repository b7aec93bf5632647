"""deploy/satellite/instanceapi-cleanup.sh with a stub `hammer` on PATH and a loopback service."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from instanceapi.testing.front import NginxFront, nginx_path
from instanceapi.testing.pki import ThrowAwayCA
from tests.conftest import require_tool
from tests.test_reap_e2e import UUID, FakeService, serve

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "satellite" / "instanceapi-cleanup.sh"

STUB = """\
#!{python}
import csv, json, os, re, sys
args = sys.argv[1:]
with open(os.environ["HAMMER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
with open(os.environ["HAMMER_FIXTURE"]) as fh:
    fixture = json.load(fh)
if fixture.get("broken"):
    sys.exit("Error: Unable to connect to the Satellite")
def option(name):
    return args[args.index(name) + 1]
out = csv.writer(sys.stdout, lineterminator="\\n")
if args[-2:] == ["--per-page", "all"] and args[3:5] == ["fact", "list"]:
    fact = option("--search").split("=", 1)[1].strip()
    for host in fixture["hosts"]:
        if fact in host["facts"]:
            out.writerow([host["name"], fact, host["facts"][fact]])
elif "host" in args and "list" in args:
    found = re.fullmatch(r'name = "([^"]+)" and null\\? compute_resource', option("--search"))
    for host in fixture["hosts"]:
        if found and host["name"] == found[1] and not host.get("compute_resource"):
            out.writerow([host["name"]])
elif args[:2] == ["host", "delete"]:
    if option("--name") in fixture.get("fail_delete", []):
        sys.exit("Could not delete the host")
    print("Host deleted.")
else:
    sys.exit(f"stub hammer: unsupported {{args}}")
"""

SH = shutil.which("dash") or "/bin/sh"


@pytest.fixture(scope="module")
def fake():
    fake = FakeService()
    with serve(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture
def world(tmp_path, fake):
    """Twelve OpenStack guests (three gone) and the hosts that must never be touched."""
    fake.mode, fake.token, fake.existing = "ok", None, set()
    hosts = []
    for n in range(12):
        facts = {
            "virt::uuid": UUID.format(n).upper(),
            "dmi::system::product_name": "OpenStack Nova",
        }
        hosts.append({"name": f"vm{n:02d}.example.com", "facts": facts})
        if n >= 3:
            fake.existing.add(UUID.format(n))
    product = "dmi::system::product_name"
    others = [
        ("vmware.example.com", {"virt::uuid": UUID.format(99), product: "VMware"}),
        ("empty.example.com", {"virt::uuid": "", product: "OpenStack Compute"}),
        ("bad.example.com", {"virt::uuid": "$(reboot)", product: "OpenStack Compute"}),
        ("nouuid.example.com", {product: "OpenStack Compute"}),
        ("metal.example.com", {}),
    ]
    hosts += [{"name": name, "facts": facts} for name, facts in others]
    stub = tmp_path / "bin" / "hammer"
    stub.parent.mkdir()
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    world = {"hosts": hosts, "dir": tmp_path, "fake": fake}
    return world


def cleanup(world, *args, url=None, **env_extra):
    fixture = world["dir"] / "fixture.json"
    fixture.write_text(json.dumps({k: v for k, v in world.items() if k not in ("dir", "fake")}))
    log = world["dir"] / "hammer.log"
    log.unlink(missing_ok=True)
    env = {
        "PATH": f"{world['dir'] / 'bin'}:{os.environ['PATH']}",
        "HAMMER_FIXTURE": str(fixture),
        "HAMMER_LOG": str(log),
        **env_extra,
    }
    proc = subprocess.run(
        [SH, str(SCRIPT), *args, url or world["fake"].url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    deleted = [c[c.index("--name") + 1] for c in calls if c[:2] == ["host", "delete"]]
    return proc.returncode, proc.stdout + proc.stderr, deleted


GONE = {"vm00.example.com", "vm01.example.com", "vm02.example.com"}


def absent_lines(out: str) -> set[str]:
    return {line.split()[1] for line in out.splitlines() if line.startswith("absent")}


def test_shellcheck_is_clean():
    shellcheck = require_tool("shellcheck")
    assert subprocess.run([shellcheck, str(SCRIPT)], check=False).returncode == 0


def test_dry_run_lists_the_gone_guests_and_deletes_nothing(world):
    status, out, deleted = cleanup(world)
    assert status == 0, out
    assert absent_lines(out) == GONE
    assert deleted == [] and "dry-run: 3 host(s) would be deleted" in out
    assert "vmware.example.com" not in out, "only OpenStack guests are asked about"
    assert "skip    empty.example.com" in out and "skip    bad.example.com" in out


def test_apply_deletes_the_gone_guests_but_not_a_linked_one(world):
    world["hosts"][1]["compute_resource"] = "libvirt"
    world["fail_delete"] = ["vm02.example.com"]
    status, out, deleted = cleanup(world, "--apply")
    assert status == 1, out
    assert deleted == ["vm00.example.com", "vm02.example.com"]
    assert "kept    vm01.example.com: linked to a compute resource" in out
    assert "FAILED  vm02.example.com" in out and "deleted vm00.example.com" in out


def test_the_cap_stops_a_wrong_cloud(world):
    world["fake"].mode = "all-absent"
    status, out, deleted = cleanup(world, "--apply")
    assert status == 5 and deleted == [], out
    world["fake"].mode = "ok"
    status, out, deleted = cleanup(world, "--apply", "--max-delete", "2")
    assert status == 5 and deleted == [] and "3 hosts absent" in out


@pytest.mark.parametrize("mode", ["bare-404", "error"])
def test_no_marker_no_deletion(world, mode):
    world["fake"].mode = mode
    status, out, deleted = cleanup(world, "--apply")
    assert status == 0 and deleted == [] and absent_lines(out) == set(), out
    assert "dry-run" not in out


def test_a_down_service_or_failing_hammer_stops_everything(world):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    status, out, deleted = cleanup(world, "--apply", url=refused)
    assert status == 4 and deleted == [], out
    world["broken"] = True
    status, out, deleted = cleanup(world, "--apply")
    assert status == 3 and deleted == [] and "hammer fact list" in out


def test_bearer_token_from_a_file(world):
    world["fake"].token = "s3cret"
    status, out, _ = cleanup(world)
    assert status == 4, out
    token = world["dir"] / "token"
    token.write_text("s3cret\n")
    status, out, _ = cleanup(world, INSTANCEAPI_TOKEN_FILE=str(token))
    assert status == 0 and absent_lines(out) == GONE, out


def test_a_client_certificate_for_a_mutual_tls_front(world, tmp_path):
    require_tool("curl")
    nginx_path() or require_tool("nginx")
    ca = ThrowAwayCA(tmp_path)
    client = ca.issue_client()
    upstream = world["fake"].url.removeprefix("http://")
    with NginxFront(upstream, ca.issue_server(), client_ca=ca.cert) as front:
        trust = {"CURL_CA_BUNDLE": str(ca.cert)}
        status, out, _ = cleanup(world, url=front.url, **trust)
        assert status == 4 and "answered 400" in out, out  # no certificate: nothing done
        cert = {
            "INSTANCEAPI_CLIENT_CERT": str(client.cert),
            "INSTANCEAPI_CLIENT_KEY": str(client.key),
        }
        status, out, _ = cleanup(world, url=front.url, **trust, **cert)
    assert status == 0 and absent_lines(out) == GONE, out


@pytest.mark.parametrize("args", [(), ("--max-delete", "x"), ("--bogus",)])
def test_usage_errors(world, args):
    proc = subprocess.run(
        [SH, str(SCRIPT), *args, *(["http://x"] if args else [])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
