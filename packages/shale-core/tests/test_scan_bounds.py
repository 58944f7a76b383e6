"""Inclusive and exclusive scan bounds (SlateDB's ``KeyRange``): ``start_inclusive`` and
``end_inclusive`` on every scan, checked against a model on memtable and SST data, through
namespaces, transactions, readers, snapshots, asyncio and the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale import Db, DbReader, Settings, TransactionError
from shale.aio import AsyncDb
from shale.errors import InvalidError
from shale.keys import key_after, scan_bounds
from shale.row import MAX_KEY_LEN

SETTINGS = Settings(flush_interval=0.01, compactor_options=None)

KEYS = [b"a", b"b", b"b\x00", b"b\x00\x00", b"b\x01", b"ba", b"c", b"\xff", b"\xff\xff"]


def model(
    keys: list[bytes],
    start: bytes | None,
    end: bytes | None,
    start_inclusive: bool,
    end_inclusive: bool,
) -> list[bytes]:
    def inside(k: bytes) -> bool:
        if start is not None and (k < start or (k == start and not start_inclusive)):
            return False
        return end is None or k < end or (k == end and end_inclusive)

    return sorted(k for k in keys if inside(k))


def test_key_after() -> None:
    assert key_after(b"a") == b"a\x00"
    top = b"a" * (MAX_KEY_LEN - 1) + b"\xff"
    assert key_after(top) == b"a" * (MAX_KEY_LEN - 2) + b"b"  # no longer key exists
    assert key_after(b"\xff" * MAX_KEY_LEN) is None


def test_scan_bounds_units() -> None:
    assert scan_bounds(b"a", b"c") == (b"a", b"c")
    assert scan_bounds(b"a", b"c", False, True) == (b"a\x00", b"c\x00")
    assert scan_bounds(None, None, False, True) == (None, None)  # unbounded stays unbounded
    assert scan_bounds(b"b", b"b", False, False) == (b"b\x00", b"b\x00")  # empty
    assert scan_bounds(b"b", b"b", True, True) == (b"b", b"b\x00")
    assert scan_bounds(b"\xff" * MAX_KEY_LEN, None, False) == (b"\xff" * MAX_KEY_LEN,) * 2
    assert scan_bounds(None, b"\xff" * MAX_KEY_LEN, True, True) == (None, None)
    with pytest.raises(InvalidError, match="inverted"):
        scan_bounds(b"c", b"a", True, True)
    with pytest.raises(InvalidError, match="bools"):
        scan_bounds(b"a", b"c", 0, True)  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        scan_bounds(b"", b"c", False)  # not a key


@pytest.fixture()
def db(tmp_path: Path) -> Db:
    d = Db.open(str(tmp_path / "db"), settings=SETTINGS)
    for k in KEYS:
        d.put(k, b"v" + k)
    yield d
    d.close()


BOUND = st.one_of(st.none(), st.sampled_from([*KEYS, b"b\x00\x01", b"bb", b"\x00"]))


@settings(max_examples=150, deadline=None)
@given(start=BOUND, end=BOUND, si=st.booleans(), ei=st.booleans(), reverse=st.booleans())
def test_db_scan_matches_model(start, end, si, ei, reverse) -> None:  # type: ignore[no-untyped-def]
    if start is not None and end is not None and start > end:
        start, end = end, start
    with Db.open("memory://bounds-model", settings=SETTINGS) as db:
        if db.get(KEYS[0]) is None:
            for k in KEYS:
                db.put(k, b"v" + k)
        want = model(KEYS, start, end, si, ei)
        if reverse:
            want.reverse()
        got = [
            k for k, _ in db.scan(start, end, start_inclusive=si, end_inclusive=ei, reverse=reverse)
        ]
        assert got == want
        with db.snapshot() as snap:
            got = list(
                snap.scan(
                    start, end, start_inclusive=si, end_inclusive=ei, reverse=reverse
                ).keys_only()
            )
            assert got == want


@pytest.mark.parametrize("flushed", [False, True])
def test_every_combination_memtable_and_sst(db: Db, flushed: bool) -> None:
    if flushed:
        db.flush(memtable=True)
    for start in (None, b"b", b"b\x00"):
        for end in (None, b"b\x00", b"c"):
            for si in (True, False):
                for ei in (True, False):
                    want = model(KEYS, start, end, si, ei)
                    got = dict(db.scan(start, end, start_inclusive=si, end_inclusive=ei))
                    assert list(got) == want, (start, end, si, ei)
                    assert all(v == b"v" + k for k, v in got.items())


def test_seek_inside_exclusive_range(db: Db) -> None:
    it = db.scan(b"b", b"c", start_inclusive=False, end_inclusive=True)
    with pytest.raises(InvalidError):
        it.seek(b"b")  # the excluded start is outside the range
    assert next(it)[0] == b"b\x00"
    it.seek(b"ba")
    assert list(it.keys_only()) == [b"ba", b"c"]


def test_bad_flags_raise_before_reading(db: Db) -> None:
    with pytest.raises(InvalidError):
        db.scan(b"a", b"c", end_inclusive="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="inverted"):
        db.scan(b"c", b"a", end_inclusive=True)


def test_reader_and_namespaces(db: Db, tmp_path: Path) -> None:
    ns = db.namespace(b"b")  # keys b"", b"\x00", b"\x00\x00", b"\x01", b"a" inside it
    inside = [b"\x00", b"\x00\x00", b"\x01", b"a"]  # b"b" itself is outside: keys must be non-empty
    assert list(ns.scan(start_inclusive=False).keys_only()) == inside
    assert list(ns.scan(None, b"\x01", end_inclusive=True).keys_only()) == inside[:3]
    assert list(ns.scan(b"\x00", None, start_inclusive=False).keys_only()) == inside[1:]
    assert list(ns.scan(end_inclusive=True).keys_only()) == inside  # the namespace's end holds
    assert list(ns.scan(b"\x00", b"\x00", start_inclusive=False, end_inclusive=True)) == []
    with ns.begin() as txn:
        txn.put(b"\x00\x01", b"own")
        keys = list(txn.scan(b"\x00", b"\x01", start_inclusive=False, end_inclusive=True))
        assert [k for k, _ in keys] == [b"\x00\x00", b"\x00\x01", b"\x01"]
    db.flush()
    with DbReader.open(str(tmp_path / "db")) as reader:
        got = list(reader.scan(b"b", b"c", start_inclusive=False, end_inclusive=True).keys_only())
        assert got == model([*KEYS, b"b\x00\x01"], b"b", b"c", False, True)
        rns = reader.namespace(b"b")
        assert list(rns.scan(b"\x01", start_inclusive=False).keys_only()) == [b"a"]


def test_transaction_scan_and_serializable_range(db: Db) -> None:
    txn = db.begin("serializable")
    txn.put(b"b\x00\x01", b"own")
    got = [k for k, _ in txn.scan(b"b\x00", b"ba", start_inclusive=False, end_inclusive=True)]
    assert got == [b"b\x00\x00", b"b\x00\x01", b"b\x01", b"ba"]
    db.put(b"b\x00", b"outside the read range")  # the excluded start: no conflict
    txn.put(b"x", b"1")
    txn.commit()
    txn = db.begin("serializable")
    list(txn.scan(b"b\x00", b"ba", start_inclusive=False, end_inclusive=True))
    db.put(b"ba", b"inside: the inclusive end")
    txn.put(b"x", b"2")
    with pytest.raises(TransactionError):
        txn.commit()


def test_asyncio(tmp_path: Path) -> None:
    async def main() -> list[bytes]:
        async with AsyncDb.open(str(tmp_path / "adb"), settings=SETTINGS) as db:
            for k in KEYS:
                await db.put(k, k)
            return [
                k async for k, _ in db.scan(b"b", b"c", start_inclusive=False, end_inclusive=True)
            ]

    assert asyncio.run(main()) == model(KEYS, b"b", b"c", False, True)


def test_cli(db: Db, tmp_path: Path) -> None:
    db.flush()
    argv = ["--start", "62", "--end", "63", "--start-exclusive", "--end-inclusive"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shale",
            "scan",
            str(tmp_path / "db"),
            *argv,
            "--keys-only",
            "--hex",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [k.hex() for k in model(KEYS, b"b", b"c", False, True)]
