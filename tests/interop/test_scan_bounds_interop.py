"""Inclusive and exclusive scan bounds agree with the official package's ``KeyRange``: the same
keys for every combination of bounds and flags over a shale database (memtable-free: WAL,
L0 and a compacted layout), except that a range holding no key is empty in shale where the
official package raises."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from shale import Db, Settings

pytestmark = pytest.mark.interop

KEYS = [b"a", b"b", b"b\x00", b"b\x00\x00", b"b\x01", b"ba", b"c", b"\xff", b"\xff\xff"]
BOUNDS = [None, b"b", b"b\x00", b"b\x00\x01", b"c", b"\xff"]


def test_official_and_shale_scan_the_same_ranges(tmp_path: Path, official_reader: Any) -> None:
    store = tmp_path / "store"
    settings = Settings(flush_interval=0.01, compactor_options=None)
    with Db.open(str(store / "db"), settings=settings) as db:
        for k in KEYS[:5]:
            db.put(k, k)
        db.flush(memtable=True)  # half in an L0 SST
        for k in KEYS[5:]:
            db.put(k, k)  # half only in the WAL
    ranges = [
        (s, si, e, ei)
        for s, e in itertools.product(BOUNDS, BOUNDS)
        if s is None or e is None or s <= e
        for si, ei in itertools.product((True, False), repeat=2)
    ]
    official = official_reader.scan_ranges(store, ranges)
    refused = 0
    with Db.open(str(store / "db"), settings=settings) as db:
        for (s, si, e, ei), want in zip(ranges, official, strict=True):
            got = list(db.scan(s, e, start_inclusive=si, end_inclusive=ei).keys_only())
            if want == "error":  # the official package refuses a range that holds no key
                refused += 1
                assert got == [], (s, si, e, ei)
            else:
                assert got == want, (s, si, e, ei)
    assert refused and refused < len(ranges)  # both kinds of range were compared
