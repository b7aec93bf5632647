"""Property tests of the snapshot store: lookups agree with a dict, damage is never absence."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from instanceapi.check.store.reader import IndexView
from instanceapi.check.store.snapshot import STATUSES, SUPERSEDED_AT, SnapshotUnreadable
from instanceapi.check.store.writer import publish_changes, publish_full

# Few distinct leading bytes: many ids share a bucket, and most buckets are empty.
ids = st.builds(
    lambda head, tail: str(uuid.UUID(bytes=bytes(head) + tail)),
    st.lists(st.sampled_from([0, 1, 0xAA, 0xFF]), min_size=2, max_size=2),
    st.binary(min_size=14, max_size=14),
)
statuses = st.sampled_from([*STATUSES, "SOMETHING-NEW"])
listings = st.dictionaries(ids, statuses, max_size=60)


def expected(status: str) -> str:
    """Return what the store answers for a status Nova reported."""
    return status if status in STATUSES else "UNKNOWN"


@settings(max_examples=150, deadline=None)
@given(
    listings,
    st.lists(st.dictionaries(ids, statuses, max_size=20), max_size=5),
    st.lists(ids, max_size=20),
)
def test_lookup_agrees_with_a_dict_through_random_change_batches(
    first: dict[str, str], batches: list[dict[str, str]], probes: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.snap"
        publish_full(path, first.items(), listed_from=0.0, flags=0)
        model = {u: expected(s) for u, s in first.items()}
        deleted = {u: 0.0 for u, s in first.items() if s == "DELETED"}
        view = IndexView(path)
        for when, batch in enumerate(batches, start=1):
            publish_changes(path, batch, listed_from=float(when))
            model.update({u: expected(s) for u, s in batch.items()})
            for u, s in batch.items():
                if s == "DELETED":
                    deleted.setdefault(u, float(when))
            for u in [*model, *probes]:
                assert view.lookup(u) == model.get(u)
                assert view.deleted_at(u) == deleted.get(u)
        assert view.header().count == len(model)


@settings(max_examples=200, deadline=None)
@given(listings.filter(bool), st.data())
def test_a_damaged_byte_never_makes_a_listed_id_unlisted(
    first: dict[str, str], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.snap"
        publish_full(path, first.items(), listed_from=0.0, flags=0)
        raw = bytearray(path.read_bytes())
        at = data.draw(st.integers(0, len(raw) - 1).filter(lambda n: n != SUPERSEDED_AT))
        raw[at] ^= data.draw(st.integers(1, 255))
        if data.draw(st.booleans()):
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        path.write_bytes(raw)
        view = IndexView(path)
        for u, status in first.items():
            try:
                answer = view.lookup(u)
            except SnapshotUnreadable:
                continue
            # Only bytes nothing reads (the header's padding) may be damaged unnoticed.
            assert answer == expected(status)
