"""Change data capture against the official package: ``shale.WalReader`` reads the WAL files
the official writer wrote exactly as the official ``SlateDbWalReader`` does, the change stream
over them is those rows in seq order, and the official package ignores shale's
``shale-consumers/`` directory (its reader and its WAL reader work on a database holding one)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import shale
from shale import ids
from shale.objstore.local import LocalStore
from shale.row import MERGE, TOMBSTONE, VALUE
from tests.interop.conftest import DB_PATH, SHAPES

pytestmark = pytest.mark.interop

_KIND = {"value": VALUE, "tombstone": TOMBSTONE, "merge": MERGE}


def _tuple(c: shale.Change) -> tuple[Any, ...]:
    """A change as the fixtures' row tuple: (key, seq, kind, value or b"", expire, create)."""
    return (c.key, c.seq, _KIND[c.kind], c.value or b"", c.expire_ts, c.create_ts)


def _shale_wal_rows(db_dir: Path) -> dict[int, list[tuple[Any, ...]]]:
    with shale.WalReader(str(db_dir)) as reader:
        return {f.id: rows for f in reader.list() if (rows := [_tuple(r) for r in f.rows()])}


@pytest.mark.parametrize("shape", SHAPES)
def test_wal_reader_reads_official_wal_like_the_official_reader(
    official_dbs: Any, shape: str
) -> None:
    d = official_dbs[shape]
    db_dir = d.store_dir / d.db_path
    assert d.wal_rows, "the fixture has WAL rows"
    assert _shale_wal_rows(db_dir) == d.wal_rows
    with shale.changes(str(db_dir), follow=False) as stream:
        streamed = [_tuple(c) for c in stream]
    want = [r for wal_id in sorted(d.wal_rows) for r in d.wal_rows[wal_id]]
    assert streamed == want
    assert [r[1] for r in streamed] == sorted(r[1] for r in streamed)


def test_official_package_ignores_consumer_cursors(tmp_path: Path, official_reader: Any) -> None:
    store = tmp_path / "store"
    keys = [b"k%03d" % i for i in range(40)]
    with shale.Db.open(DB_PATH, object_store=LocalStore(str(store))) as db:
        for i, k in enumerate(keys):
            db.put(k, b"v%d" % i)
            if i == 20:
                db.flush(memtable=True)
        with db.changes(follow=False, consumer="indexer") as s:
            seen = [next(s) for _ in range(10)]
            s.commit()
    assert (store / DB_PATH / "shale-consumers" / "indexer.json").is_file()
    got = official_reader.read(store, keys)
    assert got.values == {k: b"v%d" % i for i, k in enumerate(keys)}
    assert official_reader.wal_rows(store) == _shale_wal_rows(store / DB_PATH)
    assert seen[-1].seq == 10


def test_official_reader_on_official_db_with_a_cursor(
    tmp_path: Path, official_dbs: Any, official_reader: Any
) -> None:
    d = official_dbs["mixed"]
    store = tmp_path / "store"
    shutil.copytree(d.store_dir, store)
    with shale.changes(
        d.db_path, object_store=LocalStore(str(store)), follow=False, consumer="c"
    ) as s:
        n = sum(1 for _ in s)
        s.commit()
    assert n == sum(len(v) for v in d.wal_rows.values())
    got = official_reader.read(
        store, sorted(d.expected), db_path=d.db_path, merge_operator=d.merge_operator
    )
    assert got.values == d.expected


def _shale_wal_tail(
    reader: shale.WalReader, afters: list[int], reads: list[tuple[int, int]]
) -> dict[str, list[Any]]:
    """What ``OfficialReader.wal_tail`` returns, from shale's reader (errors as ``"error"``)."""
    last: list[Any] = []
    for after in afters:
        try:
            last.append(reader.last_wal_file_id(after))
        except shale.DataError:
            last.append("error")
    batches: list[Any] = []
    for start, count in reads:
        with reader.iterator(start) as it:  # live, as the official one
            try:
                got = []
                for _ in range(count):
                    b = it.next(timeout=30)
                    assert b is not None
                    got.append((b.last_consumed_wal_file_id, [_tuple(r) for r in b.rows]))
            except shale.DataError:
                got = "error"  # type: ignore[assignment]
        batches.append(got)
    return {"last": last, "batches": batches}


def _errors_as_one(found: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {
        k: ["error" if str(v).startswith("error") else v for v in vs] for k, vs in found.items()
    }


@pytest.mark.parametrize("options", [None, {"max_buffered_bytes": 1, "max_fetch_tasks": 1}])
def test_last_wal_file_id_and_iterator_agree_with_the_official_reader(
    tmp_path: Path, official_reader: Any, options: dict[str, int] | None
) -> None:
    store = tmp_path / "store"
    for n, count in enumerate([5, 5, 0]):  # fences 1, 7 and 13
        with shale.Db.open(DB_PATH, object_store=LocalStore(str(store))) as db:
            for i in range(count):
                db.put(b"k%d-%d" % (n, i), b"v%d" % i)
                db.flush()
    kw: dict[str, Any] = dict(options, read_ahead_bytes=1) if options else {}

    def both(where: Path, afters: list[int], reads: list[tuple[int, int]]) -> dict[str, list[Any]]:
        official = official_reader.wal_tail(where, afters, reads, options=kw or None)
        with shale.WalReader(str(where / DB_PATH), **kw) as reader:
            mine = _shale_wal_tail(reader, afters, reads)
        assert mine == _errors_as_one(official)
        return mine

    got = both(store, [0, 1, 5, 7, 12, 13, 40], [(1, 13), (4, 10), (13, 1)])
    assert got["last"] == [13] * 6 + [40]
    assert [b[0] for b in got["batches"][0]] == list(range(1, 14))
    assert got["batches"][0][6] == (7, [])  # a fence is a batch without rows
    # a hole (not something a collector leaves): the probes stop where SlateDB's do, and
    # the missing file (below the manifest's next_wal_sst_id) is truncated for both
    holed = tmp_path / "holed"
    shutil.copytree(store, holed)
    (holed / ids.wal_path(DB_PATH, 10)).unlink()
    got = both(holed, [0, 8, 9, 10, 11], [(8, 2), (8, 3), (11, 3)])
    # from 0: 16 misses, 8 and 12 hit, 14 misses, 13 hits; from 8 or 9: 9, below
    # replay_after_wal_id (12): truncated
    assert got["last"] == [13, "error", "error", 13, 13]
    assert got["batches"][1] == "error" and got["batches"][2][-1][0] == 13
    # the WAL a collector would delete: a tail below it is truncated, for both
    with shale.Db.open(DB_PATH, object_store=LocalStore(str(store))) as db:  # fence 14
        db.put(b"after", b"gc")
        db.flush(memtable=True)
        floor = db.refresh_manifest().replay_after_wal_id
    for i in range(1, floor):
        (store / ids.wal_path(DB_PATH, i)).unlink()
    tail = max(int(p.stem) for p in (store / DB_PATH / "wal").glob("*.sst"))
    assert floor > 2 and tail >= floor
    got = both(
        store, [0, floor - 2, floor - 1, tail], [(1, 1), (floor - 1, 1), (floor, tail - floor + 1)]
    )
    assert got["last"] == ["error", "error", tail, tail]
    assert got["batches"][:2] == ["error", "error"]
