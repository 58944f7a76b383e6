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
