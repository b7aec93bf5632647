"""Hypothesis properties: UUID parsing and normalisation, and combining per-target results.

The oracles here are written apart from the code under test: what the README
promises, spelled out with the standard library.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from instanceapi.check.checker import Checker, RegionChecker
from instanceapi.openstack import Identity, ServerRecord, UnexpectedBody, UpstreamError
from instanceapi.uuids import InvalidUUID, byte_swapped, parse_uuid
from instanceapi.verdict import Presence, Sighting, combine

HEX = "0123456789abcdefABCDEF"


def _span(first: int, last: int) -> str:
    return "".join(chr(c) for c in range(first, last + 1))


#: Characters that look like hex digits or hyphens to a person but are not ASCII.
LOOK_ALIKES = (
    _span(0xFF10, 0xFF19)  # fullwidth digits
    + _span(0xFF41, 0xFF46)  # fullwidth a-f
    + _span(0xFF21, 0xFF26)  # fullwidth A-F
    + _span(0x0660, 0x0669)  # Arabic-Indic digits
    + _span(0x06F0, 0x06F9)  # extended Arabic-Indic digits
    + _span(0x0966, 0x096F)  # Devanagari digits
    + _span(0x1D7CE, 0x1D7D7)  # mathematical bold digits
    + "\u00b9\u00b2\u00b3\u2070"  # superscripts (str.isdigit() says yes)
    + "\u2160\u2161\u2170\u2171"  # Roman numerals (str.isnumeric() says yes)
    + "\u0430\u0435\u043e\u0441\u0410\u0412\u0421\u0415"  # Cyrillic a e o s A B C E
    + "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"  # hyphens, dashes, minus
)
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


def canonical_of(text: str) -> str | None:
    """Return what the contract says `text` means: the canonical UUID, or None (a 400)."""
    body = text.strip()
    hexdigits = body.replace("-", "") if len(body) == 36 else body
    if len(body) == 36 and [i for i, c in enumerate(body) if c == "-"] != [8, 13, 18, 23]:
        return None
    if len(hexdigits) != 32 or any(c not in HEX for c in hexdigits):
        return None
    h = hexdigits.lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parsed(text: str) -> str | None:
    """Return parse_uuid(text), or None when it refuses (checking the refusal is clean)."""
    try:
        return parse_uuid(text)
    except InvalidUUID as ex:
        assert str(ex)
        assert len(str(ex)) < 200  # a long input is not echoed whole
        return None


# -- strategies ------------------------------------------------------------------------------


@st.composite
def accepted_forms(draw: st.DrawFn) -> tuple[uuid.UUID, str]:
    """Return a UUID and one spelling of it the contract accepts."""
    value = draw(st.uuids())
    text = draw(st.sampled_from([str(value), value.hex]))
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    text = "".join(c.upper() if up else c for c, up in zip(text, flips, strict=True))
    left = draw(st.text(st.sampled_from(WHITESPACE), max_size=3))
    right = draw(st.text(st.sampled_from(WHITESPACE), max_size=3))
    return value, left + text + right


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """Return a valid spelling with one character replaced, inserted or removed."""
    _, text = draw(accepted_forms())
    position = draw(st.integers(0, len(text)))
    char = draw(st.one_of(st.sampled_from(LOOK_ALIKES + "{}:-_ gG\x00\t/"), st.characters()))
    how = draw(st.sampled_from(["replace", "insert", "delete"]))
    if how == "insert":
        return text[:position] + char + text[position:]
    if how == "delete":
        return text[:position] + text[position + 1 :]
    return text[:position] + char + text[position + 1 :]


ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=HEX + "-", max_size=40),
    st.text(st.characters(codec=None, categories=None), max_size=80),
    near_misses(),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
)


# -- UUID parsing ---------------------------------------------------------------------------------


@given(accepted_forms())
@example((uuid.UUID(int=0), "00000000000000000000000000000000"))
@example((uuid.UUID(int=2**128 - 1), " FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF\n"))
def test_every_accepted_form_round_trips_to_the_canonical_form(
    case: tuple[uuid.UUID, str],
) -> None:
    value, text = case
    assert parse_uuid(text) == str(value)


@given(ANY_TEXT)
@settings(max_examples=500)
@example("efe39f40-f70d-4e3c-98c9-550b7baff3a\u0663")
@example("efe39f40-f70d-4e3c-98c9-550b7baff3a\uff13")
@example("efe39f40\u2010f70d-4e3c-98c9-550b7baff3a3")
@example("efe39f40-f70d-4e3c-98c9-550b7baff3a3\x00")
@example("\x00efe39f40f70d4e3c98c9550b7baff3a3")
@example("")
@example("   ")
def test_nothing_else_is_accepted(text: str) -> None:
    assert parsed(text) == canonical_of(text)


@given(st.one_of(accepted_forms().map(lambda case: case[1]), ANY_TEXT))
def test_parsing_is_idempotent_and_lands_on_the_canonical_form(text: str) -> None:
    result = parsed(text)
    if result is None:
        return
    assert parse_uuid(result) == result
    assert str(uuid.UUID(result)) == result


@given(st.uuids())
def test_the_byte_swapped_twin_is_an_involution(value: uuid.UUID) -> None:
    text = str(value)
    twin = byte_swapped(text)
    assert parse_uuid(twin) == twin
    assert byte_swapped(twin) == text
    assert twin[19:] == text[19:]  # only the first three fields move
    assert uuid.UUID(twin).bytes == value.bytes_le


# -- combining per-target results ------------------------------------------------------


def sighting(presence: Presence, number: int = 0) -> Sighting:
    return Sighting(
        target=f"cloud/Region{number}",
        cloud="cloud",
        region=f"Region{number}",
        uuid=str(uuid.UUID(int=number)),
        presence=presence,
        detail=presence.value,
    )


PRESENCES = st.lists(st.sampled_from(list(Presence)), max_size=8)


@given(PRESENCES)
def test_combine_absent_only_if_every_target_is_authoritatively_absent(
    presences: list[Presence],
) -> None:
    result = combine([sighting(p, i) for i, p in enumerate(presences)])
    if Presence.PRESENT in presences:
        assert result is Presence.PRESENT
    elif presences and set(presences) == {Presence.ABSENT}:
        assert result is Presence.ABSENT
    else:
        assert result is Presence.UNKNOWN


@given(PRESENCES, st.randoms(use_true_random=False))
def test_combine_ignores_order(presences: list[Presence], rnd: Any) -> None:
    sightings = [sighting(p, i) for i, p in enumerate(presences)]
    shuffled = list(sightings)
    rnd.shuffle(shuffled)
    assert combine(shuffled) is combine(sightings)


@given(st.lists(st.sampled_from([Presence.ABSENT, Presence.UNKNOWN]), max_size=8))
def test_any_failure_makes_an_absence_unknown(presences: list[Presence]) -> None:
    sightings = [sighting(p, i) for i, p in enumerate(presences)]
    assert combine([*sightings, sighting(Presence.UNKNOWN, 99)]) is Presence.UNKNOWN


@given(PRESENCES)
def test_one_find_is_enough(presences: list[Presence]) -> None:
    sightings = [sighting(p, i) for i, p in enumerate(presences)]
    assert combine([*sightings, sighting(Presence.PRESENT, 99)]) is Presence.PRESENT


# -- the whole checker, over targets that answer anything ------------------------------------------

#: What a target's Nova may say about one id.
OUTCOMES = (
    "present",
    "soft-deleted",
    "404",
    "deleted",
    "unknown-status",
    "error",
    "odd-body",
    "odd-record",
)
PRESENT_OUTCOMES = {"present", "soft-deleted"}
ABSENT_OUTCOMES = {"404", "deleted"}


class ScriptedCompute:
    """A target whose Nova answers GET /servers/{id} from a script; an admin, so by-id rule."""

    def __init__(self, number: int, script: dict[str, str]) -> None:
        self.name = f"cloud/Region{number}"
        self.cloud = "cloud"
        self.region = f"Region{number}"
        self.script = script
        self.asked: list[str] = []

    def show(self, uuid_: str) -> ServerRecord | None:
        self.asked.append(uuid_)
        outcome = self.script.get(uuid_, "404")
        if outcome == "error":
            raise UpstreamError(self.name, "GET /servers/{id} failed: HTTP 500", status=500)
        if outcome == "404":
            return None
        if outcome == "odd-body":  # what NovaRegion raises for another server's record
            raise UnexpectedBody(self.name, "GET /servers/{id} answered another server's record")
        if outcome == "odd-record":  # a Compute that does not check: the checker does
            return ServerRecord(id="something-else", status="ACTIVE")
        status = {
            "present": "ACTIVE",
            "soft-deleted": "SOFT_DELETED",
            "deleted": "DELETED",
            "unknown-status": "UNKNOWN",
        }[outcome]
        return ServerRecord(id=uuid_, status=status)

    def list_servers(self, **_: Any) -> Iterator[list[ServerRecord]]:
        yield []

    def unfiltered_page(self, *, detail: bool) -> list[ServerRecord]:
        """No cell is down here."""
        return []

    def identity(self) -> Identity:
        return Identity(project_id="admin-project", roles=frozenset({"admin"}))

    def ping_identity(self) -> None:
        return None

    def nova_time(self) -> float | None:
        return None

    def microversion(self) -> str:
        return "2.69"


def asked_forms(value: uuid.UUID) -> list[str]:
    """Return the forms the contract says are asked: as given, and a version-4 twin."""
    twin = uuid.UUID(bytes=value.bytes_le)
    forms = [str(value)]
    if twin != value and twin.version == 4:
        forms.append(str(twin))
    return forms


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[uuid.UUID, list[dict[str, str]]]:
    """Return a UUID and, per target, what Nova says about its forms."""
    value = draw(st.uuids())
    twin = str(uuid.UUID(bytes=value.bytes_le))
    targets = draw(st.integers(1, 3))
    scripts = [
        {str(value): draw(st.sampled_from(OUTCOMES)), twin: draw(st.sampled_from(OUTCOMES))}
        for _ in range(targets)
    ]
    return value, scripts


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_the_checker_answers_absent_only_when_every_target_confirms(
    scenario: tuple[uuid.UUID, list[dict[str, str]]],
) -> None:
    value, scripts = scenario
    computes = [ScriptedCompute(i, script) for i, script in enumerate(scripts)]
    checker = Checker([RegionChecker(c) for c in computes], bulk_concurrency=1)
    verdict = checker.check(str(value))
    # The twin is not asked where the lookup of the form as given failed.
    said = [
        script[form]
        for script in scripts
        for form in asked_forms(value)[: 1 if script[str(value)] == "error" else 2]
    ]
    if any(outcome in PRESENT_OUTCOMES for outcome in said):
        assert verdict.presence is Presence.PRESENT
        assert verdict.matched in ("as-given", "byte-swapped")
    elif all(outcome in ABSENT_OUTCOMES for outcome in said):
        assert verdict.presence is Presence.ABSENT
        assert all(c.asked for c in computes)  # every target was asked
    else:
        assert verdict.presence is Presence.UNKNOWN
    if verdict.presence is not Presence.PRESENT:
        # Absence and doubt are decided only after every form that can matter was asked
        # of every target: the twin everywhere the first lookup did not fail.
        for compute, script in zip(computes, scripts, strict=True):
            wanted = asked_forms(value)[: 1 if script[str(value)] == "error" else 2]
            assert set(wanted) <= set(compute.asked)
            assert len(compute.asked) == len(wanted)


@pytest.mark.parametrize("outcome", ["error", "unknown-status", "odd-body", "odd-record"])
def test_a_failing_twin_lookup_is_doubt_not_absence(outcome: str) -> None:
    value = next(u for u in (uuid.uuid4() for _ in range(1000)) if len(asked_forms(u)) == 2)
    twin = asked_forms(value)[1]
    compute = ScriptedCompute(0, {str(value): "404", twin: outcome})
    verdict = Checker([RegionChecker(compute)]).check(str(value))
    assert verdict.presence is Presence.UNKNOWN
