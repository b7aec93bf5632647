"""What the paced resync has seen: about a byte per server, however long the walk takes.

The walk reads the whole listing over many minutes; keeping every id it saw
would cost as much as a second index. A Bloom filter keeps one byte per server
instead. Its only error is a false "seen": a row the walk did not see is then
kept until the next walk (an old DELETED record, or a safe false 200), never a
row removed that the walk saw.
"""

from __future__ import annotations

import hashlib

#: Bits per expected server, and probes per id: about 2 % false "seen" (kept rows).
BITS_PER_ID = 8
PROBES = 3


class SeenIds:
    """A Bloom filter of 16-byte server ids."""

    def __init__(self, expected: int) -> None:
        # Room for growth while the walk lasts; never smaller than 64 kB of bits.
        self._bits = max(BITS_PER_ID * (expected + expected // 4), 1 << 16)
        self._map = bytearray(self._bits // 8 + 1)

    def _positions(self, key: bytes) -> list[int]:
        digest = hashlib.blake2b(key, digest_size=4 * PROBES).digest()
        return [
            int.from_bytes(digest[4 * i : 4 * i + 4], "little") % self._bits for i in range(PROBES)
        ]

    def add(self, key: bytes) -> None:
        """Remember that the walk saw `key`."""
        for bit in self._positions(key):
            self._map[bit >> 3] |= 1 << (bit & 7)

    def __contains__(self, key: object) -> bool:
        """Return True if the walk (probably) saw `key`; False means it surely did not."""
        if not isinstance(key, bytes):
            return False
        return all(self._map[bit >> 3] & (1 << (bit & 7)) for bit in self._positions(key))

    @property
    def size(self) -> int:
        """Return the bytes this filter holds."""
        return len(self._map)
