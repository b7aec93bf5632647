"""deploy/satellite/instanceapi-cleanup.sh with a hammer stand-in on PATH, against the
simulated Satellite and a loopback service."""

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
from instanceapi.testing.satellite import SimulatedSatellite
from tests.fake_service import UUID, FakeService, serve
from tests.fakes import big_satellite, require_tool

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "satellite" / "instanceapi-cleanup.sh"
STUB = Path(__file__).resolve().parent / "hammer_stub.py"
SH = shutil.which("dash") or "/bin/sh"
GONE = {"vm00.example.com", "vm01.example.com", "vm02.example.com"}


@pytest.fixture(scope="module")
def fake():
    fake = FakeService()
    with serve(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture
def sat():
    with SimulatedSatellite() as sim:
        yield sim


@pytest.fixture
def world(tmp_path, fake, sat):
    """Twelve OpenStack guests (three gone) and the hosts that must never be touched."""
    fake.mode, fake.token, fake.existing = "ok", None, set()
    for n in range(12):
        sat.add_guest(f"vm{n:02d}.example.com", UUID.format(n).upper(), product="OpenStack Nova")
        if n >= 3:
            fake.existing.add(UUID.format(n))
    sat.add_host("vmware.example.com", uuid=UUID.format(99), product="VMware")
    sat.add_host("empty.example.com", uuid="", product="OpenStack Compute")
    sat.add_host("bad.example.com", uuid="$(reboot)", product="OpenStack Compute")
    sat.add_host("nouuid.example.com", product="OpenStack Compute")
    sat.add_host("metal.example.com")
    return {"dir": tmp_path, "fake": fake, "sat": sat}


def cleanup(world, *args, url=None, hammer_url=None, **env_extra):
    bin_dir = world["dir"] / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "hammer"
    stub.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STUB}" "$@"\n')
    stub.chmod(0o755)
    log = world["dir"] / "hammer.log"
    log.unlink(missing_ok=True)
    sat = world["sat"]
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HAMMER_URL": hammer_url or sat.url,
        "HAMMER_USER": sat.user,
        "HAMMER_PASSWORD": sat.password,
        "HAMMER_LOG": str(log),
        **env_extra,
    }
    proc = subprocess.run(
        [SH, str(SCRIPT), *args, url or world["fake"].url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    deleted = [c[c.index("--id") + 1] for c in calls if c[:2] == ["host", "delete"]]
    return proc.returncode, proc.stdout + proc.stderr, deleted, calls


def absent_lines(out: str) -> set[str]:
    return {line.split()[1] for line in out.splitlines() if line.startswith("absent")}


def test_shellcheck_is_clean():
    shellcheck = require_tool("shellcheck")
    assert subprocess.run([shellcheck, str(SCRIPT)], check=False).returncode == 0


def test_dry_run_lists_the_gone_guests_and_deletes_nothing(world):
    status, out, deleted, calls = cleanup(world)
    assert status == 0, out
    assert absent_lines(out) == GONE
    assert deleted == [] and "dry-run: 3 host(s) would be deleted" in out
    assert "vmware.example.com" not in out, "only OpenStack guests are asked about"
    assert "skip    empty.example.com" in out and "skip    bad.example.com" in out
    facts = [c for c in calls if c[3:5] == ["fact", "list"]]
    assert facts and all("--per-page" not in c and "host_id ASC" in c for c in facts)


def test_apply_deletes_by_id_but_not_a_linked_one_and_proves_each_deletion(world):
    """Issue 10 item 5 (script): Katello's 200 on a failed destroy is not a deletion."""
    sat = world["sat"]
    sat.host("vm01.example.com").compute_resource_id = 4
    sat.fail_delete("vm02.example.com")  # 200, and the record survives
    status, out, deleted, _ = cleanup(world, "--apply")
    assert status == 1, out
    ids = {sat.host(n).id for n in ("vm02.example.com",)} | {1}
    assert {int(i) for i in deleted} == ids
    assert sat.deleted == ["vm00.example.com"]
    assert "kept    vm01.example.com" in out
    assert "FAILED  vm02.example.com" in out and "deleted vm00.example.com" in out
    assert "deleted vm02.example.com" not in out


def test_a_host_taken_over_is_not_deleted(world):
    """Issue 10 item 3 (script): a new machine under the same name keeps id and name."""
    sat = world["sat"]
    world["fake"].existing.add(UUID.format(50))
    # Two fact listings (one page each), then vm00's re-read: the takeover comes first.
    sat.before(
        "GET /api/v2/fact_values",
        lambda: sat.reregister("vm00.example.com", UUID.format(50)),
        after=2,
    )
    status, out, _, _ = cleanup(world, "--apply", "--max-delete", "3")
    assert status == 0, out
    assert set(sat.deleted) == GONE - {"vm00.example.com"}


def test_a_host_re_registered_with_the_same_uuid_or_never_registered_is_kept(world):
    sat = world["sat"]
    sat.host("vm02.example.com").registration = None  # its facts, but no consumer
    # vm00's consumer is replaced between the check and the DELETE; virt::uuid unchanged.
    sat.before(
        "GET /api/v2/hosts/:id",
        lambda: setattr(sat.host("vm00.example.com"), "registration", "new-consumer"),
        after=2,
    )
    status, out, _, _ = cleanup(world, "--apply", "--max-delete", "3")
    assert status == 0, out
    assert sat.deleted == ["vm01.example.com"]


def test_the_cap_stops_a_wrong_cloud(world):
    world["fake"].mode = "all-absent"
    status, out, deleted, _ = cleanup(world, "--apply")
    assert status == 5 and deleted == [], out
    world["fake"].mode = "ok"
    status, out, deleted, _ = cleanup(world, "--apply", "--max-delete", "2")
    assert status == 5 and deleted == [] and "3 hosts absent" in out


@pytest.mark.parametrize("mode", ["bare-404", "error"])
def test_no_marker_no_deletion(world, mode):
    world["fake"].mode = mode
    status, out, deleted, _ = cleanup(world, "--apply")
    assert status == 0 and deleted == [] and absent_lines(out) == set(), out
    assert "dry-run" not in out


def test_a_down_service_or_failing_hammer_stops_everything(world):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    status, out, deleted, _ = cleanup(world, "--apply", url=refused)
    assert status == 4 and deleted == [], out
    status, out, deleted, _ = cleanup(world, "--apply", hammer_url=refused)
    assert status == 3 and deleted == [] and "hammer host list" in out


def test_bearer_token_from_a_file(world):
    world["fake"].token = "s3cret"
    status, out, _, _ = cleanup(world)
    assert status == 4, out
    token = world["dir"] / "token"
    token.write_text("s3cret\n")
    status, out, _, _ = cleanup(world, INSTANCEAPI_TOKEN_FILE=str(token))
    assert status == 0 and absent_lines(out) == GONE, out


def test_a_client_certificate_for_a_mutual_tls_front(world, tmp_path):
    require_tool("curl")
    nginx_path() or require_tool("nginx")
    ca = ThrowAwayCA(tmp_path)
    client = ca.issue_client()
    upstream = world["fake"].url.removeprefix("http://")
    with NginxFront(upstream, ca.issue_server(), client_ca=ca.cert) as front:
        trust = {"CURL_CA_BUNDLE": str(ca.cert)}
        status, out, _, _ = cleanup(world, url=front.url, **trust)
        assert status == 4 and "answered 400" in out, out  # no certificate: nothing done
        cert = {
            "INSTANCEAPI_CLIENT_CERT": str(client.cert),
            "INSTANCEAPI_CLIENT_KEY": str(client.key),
        }
        status, out, _, _ = cleanup(world, url=front.url, **trust, **cert)
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


def test_the_stub_behaves_like_hammer(world, tmp_path):
    """`--per-page all` lists nothing; CSV without --per-page reads every page."""
    sat = world["sat"]
    for n in range(1100):
        sat.add_host(f"extra{n:04d}.example.com", product="PowerEdge")
    env = {
        "HAMMER_URL": sat.url, "HAMMER_USER": sat.user, "HAMMER_PASSWORD": sat.password,
        "HAMMER_LOG": str(tmp_path / "log"), "PATH": os.environ["PATH"],
    }  # fmt: skip

    def hammer(*args):
        cmd = [sys.executable, str(STUB), "--output", "csv", "--no-headers", *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        return proc.stdout.splitlines()

    search = ("--search", "fact = dmi::system::product_name")
    assert hammer("fact", "list", *search, "--per-page", "all") == []
    rows = hammer("fact", "list", *search)
    assert len(rows) == 1100 + 16  # every product row; metal.example.com has none
    assert rows[0].split(",")[2] == "OpenStack Compute", "ordered by value"
    by_id = hammer("fact", "list", *search, "--order", "host_id ASC")
    assert by_id[0].startswith("vm00.example.com,")
    assert sat.requests["GET /api/v2/fact_values"] == 1 + 2 + 2


def test_1300_hosts_the_script_finds_and_deletes_the_gone_guests_beyond_the_first_page(
    tmp_path, fake, sat
):
    """Issue 10 items 1-2 (script): 1,240 VMware and 60 OpenStack guests, 6 gone, last.

    Fewer OpenStack guests than reap's test: the script runs one curl per guest.
    """
    fake.mode, fake.token, fake.existing = "ok", None, set()
    gone = big_satellite(sat, fake.existing, vmware=1240, guests=60)
    world = {"dir": tmp_path, "fake": fake, "sat": sat}
    status, out, deleted, _ = cleanup(world, "--apply")
    assert status == 0, out
    assert absent_lines(out) == gone
    # 1,300 rows a fact: 1,000 + 300; then one virt::uuid re-read per host deleted.
    assert sat.requests["GET /api/v2/fact_values"] == 2 * 2 + 6
    assert set(sat.deleted) == gone and len(deleted) == 6
