"""Caller-supplied seqnums interop: the official package reads the seqs shale's writes chose,
and shale continues after the seqs the official package's writes chose (both refuse a seqnum
that is not above the last one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shale import WriteBatch
from shale.db import Db
from shale.errors import InvalidError
from shale.settings import Settings

SETTINGS = Settings(flush_interval=0.01, compactor_options=None, garbage_collector_options=None)


@pytest.mark.parametrize("flush_memtable", [False, True])
def test_official_reads_the_seqs_shale_chose(
    tmp_path: Path, official_reader: Any, flush_memtable: bool
) -> None:
    store_dir = tmp_path / "store"
    with Db.open(str(store_dir / "db"), SETTINGS) as db:
        db.put(b"a", b"1")
        db.put(b"b", b"2", seqnum=1_000)
        db.write(WriteBatch().put(b"c", b"3").delete(b"a"), seqnum=2**40)
        db.put(b"d", b"4")
        if flush_memtable:
            db.flush(memtable=True)
    official = official_reader.read(store_dir, [b"a", b"b", b"c", b"d"])
    assert official.values == {b"a": None, b"b": b"2", b"c": b"3", b"d": b"4"}
    seqs = {k: kv[0] for k, kv in official.key_values.items() if kv is not None}
    assert seqs == {b"b": 1_000, b"c": 2**40, b"d": 2**40 + 1}


def test_shale_continues_after_the_seqs_the_official_chose(
    tmp_path: Path, official_reader: Any
) -> None:
    store_dir = tmp_path / "store"
    with Db.open(str(store_dir / "db"), SETTINGS) as db:
        db.put(b"a", b"1")  # seq 1
    got = official_reader.put_seqnums(
        store_dir, [(b"b", b"2", 500), (b"c", b"3", 0), (b"x", b"no", 400), (b"d", b"4", 7_000)]
    )
    assert got[0] == 500 and got[1] > 500 and got[2] == "invalid" and got[3] == 7_000
    with Db.open(str(store_dir / "db"), SETTINGS) as db:
        assert db.get(b"x") is None
        kv = db.get_key_value(b"d")
        assert kv is not None and kv.seq == 7_000
        kv = db.get_key_value(b"b")
        assert kv is not None and kv.seq == 500
        with pytest.raises(InvalidError, match="greater than the current maximum"):
            db.put(b"e", b"5", seqnum=7_000)
        assert db.put(b"e", b"5").seq == 7_001
        assert db.put(b"f", b"6", seqnum=9_000).seq == 9_000
    official = official_reader.read(store_dir, [b"e", b"f"])
    assert official.key_values[b"e"][0] == 7_001 and official.key_values[b"f"][0] == 9_000
