"""Linux ``/proc`` readings of the service's processes: workers, memory, CPU time.

Memory per process comes from ``/proc/<pid>/smaps_rollup`` (Linux 4.14+):

* RSS: every resident page the process maps, shared ones counted in full;
* PSS: each resident page divided by the number of processes mapping it, so the
  PSS of a group of processes sums to the memory the group really uses;
* USS: ``Private_Clean + Private_Dirty``, the pages only this process maps (what
  killing it would give back);
* ``Pss_Anon``: the anonymous part of PSS (heap, not files such as a mapped
  snapshot);
* ``Pss_Shmem``: the part of PSS in tmpfs files (a snapshot in a runtime
  directory on tmpfs), whose pages are RAM whether mapped or not: the service's
  memory counts such files once, by their size, instead (``directory_bytes``).

"The whole service" is the Gunicorn master and every process below it: the
workers and any other child (a refresher process, for instance).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
#: Bounds the walk down the process tree (a service is two levels deep).
MAX_DEPTH = 4


@dataclass(frozen=True)
class Memory:
    """One process's memory, in KiB (as the kernel reports it)."""

    rss: int
    pss: int
    uss: int
    pss_anon: int
    pss_shmem: int = 0

    def __add__(self, other: Memory) -> Memory:
        return Memory(
            self.rss + other.rss,
            self.pss + other.pss,
            self.uss + other.uss,
            self.pss_anon + other.pss_anon,
            self.pss_shmem + other.pss_shmem,
        )


NO_MEMORY = Memory(0, 0, 0, 0, 0)


def children(pid: int) -> list[int]:
    """Return the direct children of `pid`, whichever of its threads forked them."""
    found: list[int] = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        try:
            found += [int(c) for c in (task / "children").read_text(encoding="ascii").split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


def descendants(pid: int, depth: int = MAX_DEPTH) -> list[int]:
    """Return every process below `pid` (children first), at most `depth` levels down."""
    out: list[int] = []
    level = [pid]
    for _ in range(depth):
        level = [child for parent in level for child in _alive_children(parent)]
        if not level:
            break
        out += level
    return out


def _alive_children(pid: int) -> list[int]:
    try:
        return children(pid)
    except FileNotFoundError:  # the process ended meanwhile
        return []


def worker_pids(master: int) -> list[int]:
    """Return the Gunicorn master's child processes (its workers, and any other child)."""
    return children(master)


def status_kib(pid: int, field: str) -> int:
    """Return a ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def memory(pid: int) -> Memory:
    """Return RSS, PSS, USS and Pss_Anon of `pid` from ``/proc/<pid>/smaps_rollup``."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return parse_rollup(fields)


def parse_rollup(fields: dict[str, int]) -> Memory:
    """Return the Memory of smaps_rollup's fields (KiB by name)."""
    return Memory(
        rss=fields["Rss"],
        pss=fields["Pss"],
        uss=fields["Private_Clean"] + fields["Private_Dirty"],
        pss_anon=fields.get("Pss_Anon", 0),  # Linux 5.9+
        pss_shmem=fields.get("Pss_Shmem", 0),
    )


def directory_kib(path: Path) -> int:
    """Return the KiB the files under `path` occupy (allocated blocks; 0 if it is gone)."""
    total = 0
    for item in path.rglob("*"):
        try:
            stat = item.lstat()
        except FileNotFoundError:  # replaced meanwhile (a snapshot is renamed over)
            continue
        if item.is_file():
            total += stat.st_blocks * 512
    return total // 1024


def tmpfs_dir(prefix: str) -> Path:
    """Make a private (0700) directory on tmpfs (/dev/shm), as systemd's RuntimeDirectory=
    is; elsewhere when there is no /dev/shm."""
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private directory in it
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=where))


def service_memory(master: int) -> dict[int, Memory]:
    """Return the memory of the master and of every process below it, by pid.

    A process that ends while being read is left out.
    """
    out: dict[int, Memory] = {}
    for pid in [master, *descendants(master)]:
        try:
            out[pid] = memory(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    """Return the CPU time (user + system) the processes have used so far."""
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / TICKS


def machine() -> str:
    """Return the cores, RAM and Python of this machine, in one line."""
    total_kib = 0
    for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
        if line.startswith("MemTotal:"):
            total_kib = int(line.split()[1])
    version = ".".join(map(str, sys.version_info[:3]))
    return f"{os.cpu_count()} cores, {total_kib / 1024**2:.1f} GiB RAM, Python {version}"
