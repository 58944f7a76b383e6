"""shale.WalReader: listing, metadata and raw rows of WAL SSTs (SlateDB's ``WalReader``)."""

from __future__ import annotations

import pytest

import shale
from shale import ids
from shale.batch import WriteBatch
from shale.errors import DataError, InvalidError
from shale.merge_operators import ConcatMergeOperator
from shale.objstore import ObjectNotFound
from shale.objstore.memory import MemoryStore


@pytest.fixture
def written() -> tuple[MemoryStore, list[shale.Change]]:
    """A database with puts, a delete, merges (not applied), a TTL and a batch; the changes
    expected from its WAL, built from the write handles."""
    store = MemoryStore()
    out: list[shale.Change] = []
    db = shale.Db.open("db", object_store=store, merge_operator=ConcatMergeOperator())
    try:
        h = db.put(b"a", b"1")
        out.append(shale.Change(h.seq, "value", b"a", b"1", h.create_ts, None, 0))
        h = db.merge(b"m", b"x")
        out.append(shale.Change(h.seq, "merge", b"m", b"x", h.create_ts, None, 0))
        h = db.merge(b"m", b"y")
        out.append(shale.Change(h.seq, "merge", b"m", b"y", h.create_ts, None, 0))
        h = db.delete(b"a")
        out.append(shale.Change(h.seq, "tombstone", b"a", None, h.create_ts, None, 0))
        h = db.put(b"t", b"2", ttl=60_000)
        out.append(shale.Change(h.seq, "value", b"t", b"2", h.create_ts, h.create_ts + 60_000, 0))
        b = WriteBatch()
        b.put(b"z", b"3")
        b.put(b"c", b"4")
        h = db.write(b)
        # one seq for the batch, rows in key order within it
        out.append(shale.Change(h.seq, "value", b"c", b"4", h.create_ts, None, 0))
        out.append(shale.Change(h.seq, "value", b"z", b"3", h.create_ts, None, 0))
    finally:
        db.close()
    return store, out


def _strip(rows: list[shale.Change]) -> list[tuple[object, ...]]:
    return [tuple(r)[:6] for r in rows]


def test_rows_are_raw_and_in_seq_order(written: tuple[MemoryStore, list[shale.Change]]) -> None:
    store, expected = written
    reader = shale.WalReader("db", object_store=store)
    files = reader.list()
    assert [f.id for f in files] == sorted(f.id for f in files)
    rows = [r for f in files for r in f.rows()]
    assert _strip(rows) == _strip(expected)
    assert all(r.wal_id is not None and ids.wal_path("db", r.wal_id) for r in rows)
    for f in files:
        assert all(r.wal_id == f.id for r in f.rows())
        assert list(f.iterator()) == f.rows()


def test_fence_object_is_listed_and_has_no_rows(
    written: tuple[MemoryStore, list[shale.Change]],
) -> None:
    store, _ = written
    reader = shale.WalReader("db", object_store=store)
    first = reader.list()[0]
    assert first.id == 1 and first.metadata().size == 0 and first.rows() == []


def test_list_range_is_half_open_and_get_does_not_check(
    written: tuple[MemoryStore, list[shale.Change]],
) -> None:
    store, _ = written
    reader = shale.WalReader("db", object_store=store)
    all_ids = [f.id for f in reader.list()]
    assert [f.id for f in reader.list(2, 4)] == [i for i in all_ids if 2 <= i < 4]
    assert [f.id for f in reader.list(start_id=3)] == [i for i in all_ids if i >= 3]
    assert [f.id for f in reader.list(end_id=3)] == [i for i in all_ids if i < 3]
    missing = reader.get(max(all_ids) + 5)
    assert missing.id == max(all_ids) + 5
    assert missing.next_id() == missing.id + 1 and missing.next_file().id == missing.id + 1
    with pytest.raises(DataError):
        missing.metadata()


def test_metadata_matches_the_store(written: tuple[MemoryStore, list[shale.Change]]) -> None:
    store, _ = written
    reader = shale.WalReader("db", object_store=store)
    for f in reader.list():
        meta = f.metadata()
        head = store.head(meta.location)
        assert (meta.id, meta.size, meta.last_modified) == (f.id, head.size, head.last_modified)
        assert meta.location == ids.wal_path("db", f.id) == f.location


def test_file_deleted_after_listing_is_a_data_error(
    written: tuple[MemoryStore, list[shale.Change]],
) -> None:
    store, _ = written
    reader = shale.WalReader("db", object_store=store)
    f = reader.list()[2]
    store.delete(f.location)
    with pytest.raises(DataError, match="not found") as info:
        f.rows()
    assert isinstance(info.value.__cause__, ObjectNotFound)


def test_stray_objects_in_wal_dir_are_ignored(
    written: tuple[MemoryStore, list[shale.Change]],
) -> None:
    store, _ = written
    store.put("db/wal/notes.txt", b"x")
    store.put("db/wal/7.sst", b"x")  # not the 20-digit name
    reader = shale.WalReader("db", object_store=store)
    assert all(len(m.location.rsplit("/", 1)[1]) == 24 for m in reader.list_metadata())


def test_url_opens_through_the_plugins(tmp_path: object) -> None:
    path = str(tmp_path)
    with shale.Db.open(path) as db:
        db.put(b"k", b"v")
    with shale.WalReader(path) as reader:
        assert [r.key for f in reader.list() for r in f.rows()] == [b"k"]


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.list("1"),
        lambda r: r.list(-1),
        lambda r: r.list(None, True),
        lambda r: r.get(-2),
        lambda r: r.get(2**64),
    ],
)
def test_bad_ids_are_invalid(call: object) -> None:
    reader = shale.WalReader("db", object_store=MemoryStore())
    with pytest.raises(InvalidError):
        call(reader)  # type: ignore[operator]


def test_bad_url_is_invalid() -> None:
    with pytest.raises(InvalidError):
        shale.WalReader("")
    with pytest.raises(InvalidError):
        shale.WalReader(3)  # type: ignore[arg-type]
