"""The ``.snap`` format: a memory-mapped, immutable table of listed server ids.

Little-endian layout (chosen by measurement, see docs/index-per-host.md)::

    header   64 bytes  magic | superseded u8 | crc32 u32 | count | generation |
                       listed_from f64 (monotonic) | flags u8 | deleted count
    table    65,537 u32: first record of each bucket (an id's first two bytes)
    ids      count x 16 bytes, grouped by bucket
    statuses count x 1 byte, an index into STATUSES
    deleted  deleted count x (16-byte id, f64 when first reported DELETED), sorted

The crc32 covers everything after itself except nothing mutable: the only byte
ever written after publication is ``superseded`` (before the crc field).
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"IAPISNP1"
HEADER = struct.Struct("<8sB3xIQQdB7xQ8x")
BUCKETS = 1 << 16
TABLE_AT = HEADER.size
TABLE = struct.Struct(f"<{BUCKETS + 1}I")
IDS_AT = TABLE_AT + TABLE.size
SUPERSEDED_AT = 8
CRC_FROM = 16
BOUNDS = struct.Struct("<II")
DELETED = struct.Struct("<16sd")

#: The listing flag: the snapshot came from a listing that includes soft-deleted servers.
INCLUDES_SOFT_DELETED = 1

#: Every server status Nova's API reports (nova/api/openstack/common.py); anything
#: else is stored as UNKNOWN, which no reader takes as evidence either way.
STATUSES = (
    "ACTIVE", "BUILD", "REBUILD", "SHUTOFF", "RESIZE", "VERIFY_RESIZE", "REVERT_RESIZE",
    "PAUSED", "SUSPENDED", "RESCUE", "ERROR", "DELETED", "SOFT_DELETED", "SHELVED",
    "SHELVED_OFFLOADED", "MIGRATING", "REBOOT", "HARD_REBOOT", "PASSWORD", "UNKNOWN",
)  # fmt: skip
CODES = {name: code for code, name in enumerate(STATUSES)}
UNKNOWN_CODE = CODES["UNKNOWN"]


class SnapshotUnreadable(Exception):
    """The snapshot is missing, truncated or corrupt: fall back, never read it as absence."""


def key_of(canonical: str) -> bytes:
    """Return the 16 bytes of a canonical (lower-case, hyphenated) UUID."""
    try:
        key = bytes.fromhex(canonical.replace("-", ""))
    except ValueError:
        key = b""
    if len(key) != 16:
        raise ValueError(f"not a UUID: {canonical!r}")
    return key


def code_of(status: str) -> int:
    """Return the one-byte code of a Nova status (UNKNOWN for one we do not know)."""
    return CODES.get(status, UNKNOWN_CODE)


@dataclass(frozen=True)
class Header:
    """The fixed fields of a snapshot."""

    count: int
    generation: int
    listed_from: float
    flags: int
    deleted: int

    def pack(self, crc: int = 0) -> bytes:
        """Return the 64 header bytes (superseded clear)."""
        return HEADER.pack(
            MAGIC, 0, crc, self.count, self.generation, self.listed_from, self.flags, self.deleted
        )

    def size(self) -> int:
        """Return the file size this header announces."""
        return IDS_AT + 17 * self.count + DELETED.size * self.deleted


class Snapshot:
    """One mapped snapshot file, verified when opened; immutable apart from `superseded`."""

    def __init__(self, mm: mmap.mmap, header: Header) -> None:
        self._mm = mm
        self.header = header
        self._status_at = IDS_AT + 16 * header.count
        self._deleted_at = self._status_at + header.count

    @classmethod
    def open(cls, path: Path) -> Snapshot:
        """Map and verify `path`; raise SnapshotUnreadable on any doubt."""
        try:
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as ex:  # ValueError: an empty file cannot be mapped
            raise SnapshotUnreadable(f"{path.name}: {ex}") from ex
        return cls(mm, verify(mm, path.name))

    @property
    def superseded(self) -> bool:
        """Return True once the writer published a newer file in this one's place."""
        return self._mm[SUPERSEDED_AT] != 0

    def code(self, key: bytes) -> int | None:
        """Return the status code of a listed id, None if this snapshot does not list it."""
        mm = self._mm
        lo, hi = BOUNDS.unpack_from(mm, TABLE_AT + 4 * (key[0] << 8 | key[1]))
        if not lo <= hi <= self.header.count:
            raise SnapshotUnreadable("bucket table out of order")
        run = mm[IDS_AT + 16 * lo : IDS_AT + 16 * hi]
        at = run.find(key)
        while at > 0 and at % 16:  # a match straddling two ids: look further
            at = run.find(key, at + 1)
        return None if at < 0 else mm[self._status_at + lo + at // 16]

    def listed_keys(self, chunk: int = 65536) -> Iterator[bytes]:
        """Yield every listed id (16 bytes each) in file order, reading `chunk` ids at a time."""
        for lo in range(0, self.header.count, chunk):
            run = self.ids(lo, min(lo + chunk, self.header.count))
            for at in range(0, len(run), 16):
                yield run[at : at + 16]

    def deleted_at(self, key: bytes) -> float | None:
        """Return when a listing first reported this id DELETED, None if none did."""
        lo, hi = 0, self.header.deleted
        while lo < hi:
            mid = (lo + hi) // 2
            found, when = DELETED.unpack_from(self._mm, self._deleted_at + DELETED.size * mid)
            if found == key:
                return float(when)
            lo, hi = (mid + 1, hi) if found < key else (lo, mid)
        return None

    def bucket_bounds(self) -> tuple[int, ...]:
        """Return the bucket table (for the writer)."""
        return TABLE.unpack_from(self._mm, TABLE_AT)

    def ids(self, lo: int, hi: int) -> bytes:
        """Return the ids of records lo..hi, 16 bytes each (for the writer)."""
        return self._mm[IDS_AT + 16 * lo : IDS_AT + 16 * hi]

    def codes(self, lo: int, hi: int) -> bytes:
        """Return the status codes of records lo..hi (for the writer)."""
        return self._mm[self._status_at + lo : self._status_at + hi]

    def deleted_section(self) -> bytes:
        """Return the raw deleted section (for the writer)."""
        return self._mm[self._deleted_at :]


def verify(mm: mmap.mmap, name: str) -> Header:
    """Check magic, size, crc and table ends of a mapped snapshot; return its header."""
    if len(mm) < IDS_AT:
        raise SnapshotUnreadable(f"{name}: truncated ({len(mm)} bytes)")
    magic, _, crc, count, generation, listed_from, flags, deleted = HEADER.unpack_from(mm, 0)
    header = Header(count, generation, listed_from, flags, deleted)
    if magic != MAGIC:
        raise SnapshotUnreadable(f"{name}: not a snapshot")
    if header.size() != len(mm):
        raise SnapshotUnreadable(f"{name}: {len(mm)} bytes, header says {header.size()}")
    # zlib releases the GIL on large buffers: other request threads keep running.
    with memoryview(mm) as view:
        actual = zlib.crc32(view[CRC_FROM:])
    if actual != crc:
        raise SnapshotUnreadable(f"{name}: checksum mismatch")
    first, last = BOUNDS.unpack_from(mm, TABLE_AT)[0], BOUNDS.unpack_from(mm, IDS_AT - 8)[1]
    if first != 0 or last != count:
        raise SnapshotUnreadable(f"{name}: bucket table does not cover {count} records")
    return header
