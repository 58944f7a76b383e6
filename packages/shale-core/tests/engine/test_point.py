"""Tests of shale.engine.point: both twins of a point lookup's walk agree with a model (and so
with each other) on generated memtables, L0 SSTs and sorted runs.

The data is one history of writes (seq 1..n) cut into contiguous seq ranges, oldest in the last
sorted run, newest in the active memtable, as an LSM tree holds it; a run is cut into SSTs at
arbitrary rows (one key's versions may span SSTs, and blocks: the block size is tiny), and some
SSTs only show a key interval (a clone's ``visible_range``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale import _accel
from shale.cache import BlockCache
from shale.engine.memtable import Memtable
from shale.errors import DataError
from shale.row import MERGE, TOMBSTONE, VALUE
from shale.sst import SsTable, build_sst
from shale.sst.filters import BloomFilterPolicy, Mmh3BloomFilterPolicy

KEYS = [b"a", b"b", b"bb", b"c", b"d\x00", b"e"]
#: keys no write uses: inside, between and outside the written ones
PROBES = [*KEYS, b"", b"a\x00", b"ba", b"cz", b"z"]


@dataclass(frozen=True)
class Interval:
    """A ``visible_range`` stand-in: ``lo <= key < hi``."""

    lo: bytes
    hi: bytes

    def contains(self, key: bytes) -> bool:
        return self.lo <= key < self.hi


class Tables:
    """The table store's part the walk uses: ``meta_cache`` and ``load``."""

    def __init__(self, ssts: dict[str, bytes], policy: Any) -> None:
        self.ssts = ssts
        self.policy = policy
        self.meta_cache = BlockCache(1 << 30)
        self.block_cache = BlockCache(1 << 30)
        self.loads = 0

    def load(self, view: str) -> SsTable:
        self.loads += 1
        t = SsTable.from_bytes(
            self.ssts[view],
            policies=[self.policy],
            block_cache=self.block_cache,
            cache_id=view,
        )
        self.meta_cache.put(view, t, 1)
        return t


def _sorted_rows(rows: list[tuple]) -> list[tuple]:  # type: ignore[type-arg]
    return sorted(rows, key=lambda r: (r[0], -r[1]))


_WRITE = st.tuples(
    st.sampled_from(KEYS),
    st.sampled_from([VALUE, VALUE, TOMBSTONE, MERGE, MERGE]),
    st.sampled_from([None, None, 5, 50]),
)


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    writes = draw(st.lists(_WRITE, min_size=1, max_size=60))
    rows = [
        (key, seq, kind, b"" if kind == TOMBSTONE else b"v%d" % seq, exp, seq * 10)
        for seq, (key, kind, exp) in enumerate(writes, start=1)
    ]
    # cut into 6 contiguous parts, oldest first: run 2, run 1, L0 old, L0 new, imm, memtable
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), min_size=5, max_size=5)))
    bounds = [0, *cuts, len(rows)]
    parts = [rows[bounds[i] : bounds[i + 1]] for i in range(6)]
    ranges = [None, Interval(b"b", b"d"), Interval(b"", b"bb")]
    return {
        "parts": parts,
        "run_splits": [draw(st.lists(st.integers(1, 12), max_size=3)) for _ in range(2)],
        "vranges": [draw(st.sampled_from(ranges)) for _ in range(8)],
        "policy": draw(st.sampled_from([None, BloomFilterPolicy(10), Mmh3BloomFilterPolicy(4)])),
        "block_size": draw(st.sampled_from([64, 96, 4096])),
    }


def _build(h: dict[str, Any]) -> tuple[list[Memtable], tuple, Tables, list[list[Any]]]:  # type: ignore[type-arg]
    """(memtables, plan, tables, sources): sources newest first, each a list of
    ``(rows, visible_range)`` for the model."""
    run2, run1, l0_old, l0_new, imm, active = h["parts"]
    policy = h["policy"]
    options: dict[str, Any] = {"block_size": h["block_size"], "min_filter_keys": 1}
    options["filter_policies"] = [policy] if policy is not None else []
    ssts: dict[str, bytes] = {}
    vranges = iter(h["vranges"])
    sources: list[list[Any]] = []
    memtables = []
    for part in (active, imm):
        mt = Memtable()
        for r in part:
            mt.put(r)
        memtables.append(mt)
        sources.append([(part, None)])

    def sst(rows: list[tuple]) -> tuple:  # type: ignore[type-arg]
        sid = f"sst{len(ssts)}"
        ssts[sid] = build_sst(rows, **options)
        vr = next(vranges)
        return (rows[0][0], rows[-1][0], vr, sid, sid)

    l0 = []
    for part in (l0_new, l0_old):
        if part:
            rows = _sorted_rows(part)
            entry = sst(rows)
            l0.append(entry)
            sources.append([(rows, entry[2])])
    runs = []
    for part, splits in ((run1, h["run_splits"][0]), (run2, h["run_splits"][1])):
        if not part:
            continue
        rows = _sorted_rows(part)
        cuts = sorted({c for c in splits if c < len(rows)})
        pieces = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
        entries = [sst(p) for p in pieces]
        runs.append(([e[0] for e in entries], entries))
        sources.append([(p, e[2]) for p, e in zip(pieces, entries, strict=True)])
    return memtables, (tuple(l0), tuple(runs)), Tables(ssts, policy or BloomFilterPolicy()), sources


def _model(sources: list[list[Any]], key: bytes, max_seq: int) -> list[tuple]:  # type: ignore[type-arg]
    out = []
    for source in sources:
        rows = [
            r
            for rows_, vr in source
            if vr is None or vr.contains(key)
            for r in rows_
            if r[0] == key and r[1] <= max_seq
        ]
        for r in sorted(rows, key=lambda r: -r[1]):
            out.append(r)
            if r[2] != MERGE:
                return out
    return out


def _twins() -> dict[str, ModuleType]:
    return _accel.twins("point")


@settings(max_examples=200, deadline=None)
@given(h=histories(), seq_cut=st.integers(-1, 70))
def test_twins_match_the_model(h: dict[str, Any], seq_cut: int) -> None:
    memtables, plan, tables, sources = _build(h)
    for name, impl in _twins().items():
        for key in PROBES:
            for max_seq in (seq_cut, 1 << 70):
                want = _model(sources, key, max_seq) if max_seq >= 0 else []
                got = impl.point_versions(memtables, plan, key, max_seq, tables)
                assert got == want, (name, key, max_seq)


def test_an_open_sst_and_its_blocks_come_from_the_caches(point_impl: ModuleType) -> None:
    rows = [(b"k%03d" % i, i + 1, VALUE, b"v", None, None) for i in range(200)]
    tables = Tables({"s": build_sst(rows, block_size=64)}, BloomFilterPolicy())
    plan = ((((b"k000", b"k199", None, "s", "s")),), ())
    for _ in range(3):
        assert point_impl.point_versions([], plan, b"k150", 10**9, tables) == [rows[150]]
        assert point_impl.point_versions([], plan, b"k150x", 10**9, tables) == []
    assert tables.loads == 1
    assert tables.meta_cache.stats()["hits"] >= 5
    blocks = tables.block_cache.stats()
    assert blocks["misses"] == 1 and blocks["hits"] >= 2


def test_a_corrupt_block_is_a_data_error(point_impl: ModuleType) -> None:
    rows = [(b"k%03d" % i, i + 1, VALUE, b"value%d" % i, None, None) for i in range(50)]
    data = bytearray(build_sst(rows, block_size=64))
    data[20] ^= 0xFF  # inside the first data block: its CRC no longer matches
    tables = Tables({"s": bytes(data)}, BloomFilterPolicy())
    plan = ((((b"k000", b"k049", None, "s", "s")),), ())
    with pytest.raises(DataError):
        point_impl.point_versions([], plan, b"k001", 10**9, tables)
