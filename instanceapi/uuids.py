"""Parse the UUIDs callers send, and the byte-swapped twin dmidecode may report."""

from __future__ import annotations

import re
import uuid

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_MAX_ECHO = 80


class InvalidUUID(ValueError):
    """The input is not a UUID in a form this service accepts; the message says why."""


def parse_uuid(raw: str) -> str:
    """Return `raw` as a lower-case canonical UUID, or raise InvalidUUID.

    Accepted: the 8-4-4-4-12 form and the 32-hex-digit form, any letter case,
    surrounding whitespace ignored. Nothing else (no braces, no ``urn:uuid:``),
    so that a caller's typo is reported instead of being silently repaired.
    """
    text = raw.strip().lower()
    if not text:
        raise InvalidUUID("no UUID given: expected 8-4-4-4-12 hex digits or 32 hex digits")
    # NOTE: re.fullmatch with [0-9a-f] also rejects Unicode look-alike digits,
    # which str.isdigit() and uuid.UUID() would let through.
    if _CANONICAL.fullmatch(text):
        return text
    if _HEX32.fullmatch(text):
        return str(uuid.UUID(hex=text))
    # Bounded after repr(): escapes make non-ASCII input up to ten times longer.
    shown = repr(raw)
    if len(shown) > _MAX_ECHO:
        shown = shown[: _MAX_ECHO - 3] + "..."
    raise InvalidUUID(f"{shown} is not a UUID: expected 8-4-4-4-12 hex digits or 32 hex digits")


def byte_swapped(canonical: str) -> str:
    """Return the UUID with its first three fields byte-swapped.

    Some SMBIOS implementations store those fields little-endian, so dmidecode
    (and hence Satellite's ``virt::uuid``) may show this form of the instance UUID.
    """
    return str(uuid.UUID(bytes_le=uuid.UUID(canonical).bytes))
