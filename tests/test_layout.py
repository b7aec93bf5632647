"""The package layout holds: OpenStack is reached through instanceapi/openstack/ only.

Static checks over the source with ``ast`` (nothing is imported or run):
- only instanceapi/openstack/ imports keystoneauth1, novaclient and openstacksdk
  (instanceapi/testing/, Nova's side, fakes them and may too);
- outside those two, no string constant names a key that only Nova's server
  JSON has (OS-EXT-*, OS-SRV-*, tenant_id, servers_links, ...);
- the decision (check/, but its store's own JSON, and doctor.py) subscripts or
  ``.get``s no "id", "status" or "name" key: servers reach it as ServerRecords.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import instanceapi

PACKAGE = Path(instanceapi.__file__).parent
#: Top-level names of the OpenStack client libraries (openstacksdk installs as "openstack").
CLIENT_LIBRARIES = frozenset({"keystoneauth1", "novaclient", "openstack"})
#: Where those libraries, and Nova's JSON, may appear.
ALLOWED = ("openstack", "testing")
#: Keys of Nova's server JSON that no JSON of our own uses.
NOVA_KEYS = frozenset({"tenant_id", "servers_links", "user_id", "hostId", "flavor", "image"})
NOVA_KEY_PREFIXES = ("OS-EXT-", "OS-SRV-", "OS-DCF:", "os-extended-volumes:")
#: Keys Nova's server JSON shares with JSON of our own (responses, the store, Foreman's).
SHARED_KEYS = frozenset({"id", "status", "name"})
#: Where servers arrive from Nova, and no JSON of our own is read.
DECISION = ("check/", "doctor.py")
OWN_JSON = ("check/store/",)


def modules_outside_openstack() -> Iterator[tuple[str, ast.Module]]:
    """Yield (path relative to the package, parsed module) for every module checked."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ALLOWED:
            continue
        yield str(relative), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_libraries(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Yield (line, module) for each absolute import of an OpenStack client library."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".", 1)[0] in CLIENT_LIBRARIES:
                yield node.lineno, name


def nova_keys(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Yield (line, text) for each string constant that is a key of Nova's server JSON."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text in NOVA_KEYS or text.startswith(NOVA_KEY_PREFIXES):
                yield node.lineno, text


def read_keys(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Yield (line, key) for each ``x["key"]`` or ``x.get("key", ...)`` of a shared key."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            key = node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            key = node.args[0]
        else:
            continue
        if isinstance(key, ast.Constant) and key.value in SHARED_KEYS:
            yield node.lineno, str(key.value)


def test_the_package_is_checked() -> None:
    """The walk finds the modules it must (a wrong root would pass vacuously)."""
    checked = {path for path, _ in modules_outside_openstack()}
    assert {"check/region.py", "check/index.py", "doctor.py", "config.py"} <= checked
    assert not any(path.startswith(("openstack/", "testing/")) for path in checked)


def test_only_the_openstack_package_imports_the_client_libraries() -> None:
    found = [
        f"instanceapi/{path}:{line} imports {name}"
        for path, tree in modules_outside_openstack()
        for line, name in imported_libraries(tree)
    ]
    assert found == []


def test_no_nova_json_key_is_read_outside_the_openstack_package() -> None:
    found = [
        f"instanceapi/{path}:{line} names Nova's key {text!r}"
        for path, tree in modules_outside_openstack()
        for line, text in nova_keys(tree)
    ]
    assert found == []


def test_the_decision_reads_servers_as_records() -> None:
    decision = [
        (path, tree)
        for path, tree in modules_outside_openstack()
        if path.startswith(DECISION) and not path.startswith(OWN_JSON)
    ]
    assert {"check/region.py", "check/index.py", "check/visibility.py"} <= {p for p, _ in decision}
    found = [
        f"instanceapi/{path}:{line} reads key {key!r} of a dict"
        for path, tree in decision
        for line, key in read_keys(tree)
    ]
    assert found == []


def test_the_checks_see_what_they_look_for() -> None:
    """Each check flags a sample of what it forbids, and not our own JSON's keys."""
    sample = ast.parse(
        "import novaclient.client\n"
        "from keystoneauth1 import session\n"
        "import openstack.config as c\n"
        "from instanceapi.openstack import NovaRegion\n"
        "from . import openstack\n"
        "state = server.get('OS-EXT-STS:vm_state')\n"
        "project = server['tenant_id']\n"
        "answer = {'status': 'ok', 'target': 'cloud/RegionOne', 'id': 1}\n"
    )
    assert [name for _, name in imported_libraries(sample)] == [
        "novaclient.client",
        "keystoneauth1",
        "openstack.config",
    ]
    assert [text for _, text in nova_keys(sample)] == ["OS-EXT-STS:vm_state", "tenant_id"]
    reads = ast.parse("a = s['id']\nb = s.get('status') or s.get('x')\nc = s.name\nd = f('id')\n")
    assert sorted(key for _, key in read_keys(reads)) == ["id", "status"]
