"""Segments (RFC-0024): extractors, routing, segmented writes and reads, open-time checks."""

from __future__ import annotations

import dataclasses
import pathlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale import InvalidError
from shale.db import Db
from shale.fbs.manifest import CompactedSst, Manifest, Segment, SortedRun, SstView
from shale.fbs.sst_meta import SsTableInfo
from shale.ids import Ulid
from shale.keys import prefix_end
from shale.meta import segments
from shale.meta.manifest_store import ManifestStore
from shale.objstore.local import LocalStore
from shale.plugins import get_host
from shale.settings import Settings

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    l0_max_ssts=10_000,  # no compactor here: L0 must never fill
)
SEG = FAST.replace(prefix_extractor="fixed3")


def open_db(path: pathlib.Path, settings: Settings = SEG, **kw: Any) -> Db:
    return Db.open(str(path), settings, **kw)


def _files(root: pathlib.Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }


# -- extractors and the hook ---------------------------------------------------------------------


def test_fixed_extractor_and_hook() -> None:
    e = segments.FixedPrefixExtractor(3)
    assert e.name == "fixed3"
    assert e.prefix_len(b"abcd") == 3 and e.prefix_len(b"ab") is None
    assert e.prefix_len(b"abc", scan_prefix=True) == 3
    assert isinstance(e, segments.PrefixExtractor)
    host = get_host()
    assert host.prefix_extractor("fixed3") == e
    assert host.prefix_extractor("fixed12") == segments.FixedPrefixExtractor(12)
    for name in ("fixed0", "fixed", "fixed-3", "nope"):
        assert host.prefix_extractor(name) is None
    with pytest.raises(InvalidError):
        segments.FixedPrefixExtractor(0)


def test_segment_prefix_errors() -> None:
    e = segments.FixedPrefixExtractor(3)
    assert segments.segment_prefix(e, b"abcdef") == b"abc"
    with pytest.raises(InvalidError, match="no segment prefix"):
        segments.segment_prefix(e, b"ab")

    class Bad:
        name = "bad"

        def prefix_len(self, key: bytes, *, scan_prefix: bool = False) -> int | None:
            return len(key) + 1

    with pytest.raises(InvalidError, match="longer than the key"):
        segments.segment_prefix(Bad(), b"abc")


# -- routing (pure) ------------------------------------------------------------------------------


def _info() -> SsTableInfo:
    return SsTableInfo(first_entry=None, index_offset=0, index_len=0, filter_offset=0, filter_len=0)


def _view(n: int) -> SstView:
    u = Ulid(n)
    return SstView(u, CompactedSst(u, _info()), None)


def _manifest(prefixes: list[bytes]) -> Manifest:
    segs = [Segment(p, None, [_view(i + 1)], []) for i, p in enumerate(sorted(prefixes))]
    return dataclasses.replace(Manifest.initial(), segments=segs, segment_extractor_name="x")


def _antichain(prefixes: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for p in sorted(set(prefixes), key=len):
        if not any(p.startswith(q) for q in out):
            out.append(p)
    return sorted(out)


_keys = st.binary(max_size=4).map(lambda b: bytes(x % 3 for x in b).replace(b"\x02", b"\xff"))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_keys.filter(bool), max_size=6),
    _keys,
    st.none() | _keys,
    st.none() | _keys,
)
def test_routing_matches_brute_force(
    raw: list[bytes], key: bytes, start: bytes | None, end: bytes | None
) -> None:
    prefixes = _antichain(raw)
    m = _manifest(prefixes)
    segments.check_manifest(m)
    owner = [p for p in prefixes if key.startswith(p)]
    assert segments.tree_for_key(m, key).prefix == (owner[0] if owner else b"")

    def overlaps(p: bytes) -> bool:
        hi = prefix_end(p)
        lo_ok = hi is None or start is None or start < hi
        hi_ok = end is None or p < end
        return lo_ok and hi_ok

    got = [t.prefix for t in segments.trees_for_range(m, start, end)]
    assert got[0] == b""  # the root tree is always read
    assert got[1:] == [p for p in prefixes if overlaps(p)]


def test_check_manifest_refuses_what_it_cannot_read() -> None:
    base = Manifest.initial()
    with pytest.raises(InvalidError, match="nest"):
        segments.check_manifest(dataclasses.replace(base, segments=[Segment(b"a"), Segment(b"ab")]))
    with pytest.raises(InvalidError, match="empty prefix"):
        segments.check_manifest(dataclasses.replace(base, segments=[Segment(b"")]))
    with pytest.raises(InvalidError, match="order"):
        segments.check_manifest(dataclasses.replace(base, segments=[Segment(b"b"), Segment(b"a")]))
    run = SortedRun(3, [_view(9)])
    with pytest.raises(InvalidError, match="run id"):
        segments.check_manifest(
            dataclasses.replace(base, compacted=[run], segments=[Segment(b"a", None, [], [run])])
        )


def test_add_l0_keeps_segments_sorted_and_creates_them() -> None:
    m = Manifest.initial()
    m = segments.add_l0(m, b"bbb", _view(1))
    m = segments.add_l0(m, b"aaa", _view(2))
    m = segments.add_l0(m, b"bbb", _view(3))
    m = segments.add_l0(m, b"", _view(4))
    assert [s.prefix for s in m.segments] == [b"aaa", b"bbb"]
    assert [v.id for v in m.segments[1].l0] == [Ulid(3), Ulid(1)]  # newest first
    assert [v.id for v in m.l0] == [Ulid(4)]
    assert segments.max_l0_ssts(m) == 2
    with pytest.raises(InvalidError, match="nest"):
        segments.add_l0(m, b"bb", _view(5))


# -- the engine ----------------------------------------------------------------------------------


def test_flush_splits_rows_by_segment_and_records_the_extractor(tmp_path: pathlib.Path) -> None:
    with open_db(tmp_path) as db:
        assert db.manifest().segment_extractor_name == "fixed3"
        for p in (b"bbb", b"aaa", b"ccc"):
            for i in range(5):
                db.put(p + b"%d" % i, p)
        db.flush(memtable=True)
        db.put(b"bbb9", b"late")
        db.flush(memtable=True)
        m = db.manifest()
        assert not m.l0 and not m.compacted  # the root tree stays empty
        assert [(s.prefix, len(s.l0)) for s in m.segments] == [
            (b"aaa", 1),
            (b"bbb", 2),
            (b"ccc", 1),
        ]
        for s in m.segments:  # every L0 SST holds only its segment's keys
            for v in s.l0:
                assert v.sst.info.first_entry is not None
                assert v.sst.info.first_entry.startswith(s.prefix)
        assert db.metrics()["l0_sst_count"] == 4
        assert db.metrics()["segment_count"] == 3


def test_key_without_prefix_is_rejected_before_it_is_written(tmp_path: pathlib.Path) -> None:
    with open_db(tmp_path) as db:
        db.put(b"aaa1", b"x")
        seq = db.metrics()["last_seq"]
        with pytest.raises(InvalidError, match="no segment prefix"):
            db.put(b"ab", b"x")
        from shale.batch import WriteBatch

        with pytest.raises(InvalidError):
            db.write(WriteBatch().put(b"bbb1", b"y").delete(b"z"))
        assert db.metrics()["last_seq"] == seq
        assert db.get(b"bbb1") is None


class _FirstDelim:
    """Segments at the first ``/`` (inclusive), like SlateDB's DST extractor."""

    name = "first-delim-/"

    def prefix_len(self, key: bytes, *, scan_prefix: bool = False) -> int | None:
        i = key.find(b"/")
        return None if i < 0 else i + 1


class _Nesting:
    """Violates the extractor contract: ``a/`` and ``a/b/`` both become prefixes."""

    name = "nesting"

    def prefix_len(self, key: bytes, *, scan_prefix: bool = False) -> int | None:
        return 4 if key.startswith(b"a/b/") else key.find(b"/") + 1 or None


def test_nested_prefix_is_rejected_at_write(tmp_path: pathlib.Path) -> None:
    with open_db(tmp_path, FAST, prefix_extractor=_Nesting()) as db:
        db.put(b"a/x", b"1")
        with pytest.raises(InvalidError, match="nest"):
            db.put(b"a/b/c", b"2")
        db.flush(memtable=True)
        assert [s.prefix for s in db.manifest().segments] == [b"a/"]


def test_object_extractor_beats_settings_and_reopens(tmp_path: pathlib.Path) -> None:
    with open_db(tmp_path, SEG.replace(prefix_extractor="fixed9"), prefix_extractor=_FirstDelim()):
        pass
    with pytest.raises(InvalidError, match="mismatch"):
        open_db(tmp_path, SEG)
    with open_db(tmp_path, FAST, prefix_extractor=_FirstDelim()) as db:
        db.put(b"users/1", b"u")
        db.put(b"orders/1", b"o")
        db.flush(memtable=True)
        assert [s.prefix for s in db.manifest().segments] == [b"orders/", b"users/"]


@pytest.mark.parametrize(
    "settings,kwargs,match",
    [
        (FAST, {}, "segmented"),  # no extractor
        (SEG.replace(prefix_extractor="fixed4"), {}, "mismatch"),
        (FAST, {"prefix_extractor": _FirstDelim()}, "mismatch"),
    ],
)
def test_wrong_extractor_fails_before_anything_is_written(
    tmp_path: pathlib.Path, settings: Settings, kwargs: dict[str, Any], match: str
) -> None:
    with open_db(tmp_path) as db:
        db.put(b"aaa1", b"x")
        db.flush(memtable=True)
        db.put(b"bbb1", b"wal-only")
    before = _files(tmp_path)
    with pytest.raises(InvalidError, match=match):
        open_db(tmp_path, settings, **kwargs)
    assert _files(tmp_path) == before  # no epoch bump, no WAL fence, no L0
    with open_db(tmp_path) as db:
        assert db.get(b"aaa1") == b"x" and db.get(b"bbb1") == b"wal-only"


def test_extractor_cannot_be_added_to_an_existing_database(tmp_path: pathlib.Path) -> None:
    with open_db(tmp_path, FAST) as db:
        db.put(b"aaa1", b"x")
    before = _files(tmp_path)
    with pytest.raises(InvalidError, match="without a segment extractor"):
        open_db(tmp_path, SEG)
    assert _files(tmp_path) == before


def test_extractor_must_recognise_persisted_prefixes(tmp_path: pathlib.Path) -> None:
    class Renamed(segments.FixedPrefixExtractor):
        @property
        def name(self) -> str:
            return "fixed3"

    with open_db(tmp_path) as db:
        db.put(b"aaa1", b"x")
        db.flush(memtable=True)
    before = _files(tmp_path)
    with pytest.raises(InvalidError, match="does not recognise"):
        open_db(tmp_path, FAST, prefix_extractor=Renamed(4))
    assert _files(tmp_path) == before


def test_bad_extractor_arguments(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidError, match="no plugin provides"):
        open_db(tmp_path / "a", FAST.replace(prefix_extractor="nope"))

    class OfficialStyle:
        def name(self) -> str:
            return "x"

        def prefix_len(self, key: bytes) -> int:
            return 1

    with pytest.raises(InvalidError, match="not a method"):
        open_db(tmp_path / "b", FAST, prefix_extractor=OfficialStyle())
    with pytest.raises(InvalidError, match="manifest format 2"):
        open_db(tmp_path / "c", SEG.replace(manifest_format_version=1))
    assert not (tmp_path / "c" / "manifest").exists()


def test_unreadable_segments_fail_open_before_anything_is_written(tmp_path: pathlib.Path) -> None:
    store = LocalStore(str(tmp_path))
    ms = ManifestStore(store, "")
    bad = dataclasses.replace(
        Manifest.initial(),
        segments=[Segment(b"aa"), Segment(b"aaa")],
        segment_extractor_name="fixed3",
    )
    ms.try_write(1, bad)
    before = _files(tmp_path)
    for s in (SEG, FAST):
        with pytest.raises(InvalidError, match="antichain"):
            open_db(tmp_path, s)
    assert _files(tmp_path) == before


class _Model:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def scan(self, start: bytes | None, end: bytes | None, reverse: bool) -> list[bytes]:
        ks = sorted(
            k for k in self.data if (start is None or k >= start) and (end is None or k < end)
        )
        return ks[::-1] if reverse else ks


@pytest.mark.parametrize("seed", range(4))
def test_segmented_reads_match_a_model(tmp_path: pathlib.Path, seed: int) -> None:
    rnd = random.Random(seed)
    prefixes = [b"aaa", b"aab", b"abz", b"b\xff\xff", b"ccc", b"\xff\xff\xff"]
    model = _Model()
    snaps: list[tuple[Any, dict[bytes, bytes]]] = []
    db = open_db(tmp_path)
    try:
        for step in range(600):
            op = rnd.random()
            key = rnd.choice(prefixes) + bytes([rnd.randrange(4)])
            if op < 0.6:
                value = b"%d" % step
                db.put(key, value, durable=False)
                model.data[key] = value
            elif op < 0.8:
                db.delete(key, durable=False)
                model.data.pop(key, None)
            elif op < 0.83:
                db.flush(memtable=True)
            elif op < 0.85 and len(snaps) < 3:
                snaps.append((db.snapshot(), dict(model.data)))
            elif op < 0.87:
                db.close()
                db = open_db(tmp_path)
                snaps = []
            else:
                _check(db, model, rnd, prefixes)
        _check(db, model, rnd, prefixes)
        for snap, data in snaps:
            m2 = _Model()
            m2.data = data
            for k in {p + bytes([i]) for p in prefixes for i in range(4)}:
                assert snap.get(k) == data.get(k)
            assert [k for k, _ in snap.scan(reverse=True)] == m2.scan(None, None, True)
        assert db.manifest().segments  # the flushes produced segment trees
    finally:
        db.close()


def _check(db: Db, model: _Model, rnd: random.Random, prefixes: list[bytes]) -> None:
    for p in prefixes:
        for i in range(4):
            k = p + bytes([i])
            assert db.get(k) == model.data.get(k), k
    bounds = [None, b"", b"a", b"aab", b"aab\x02", b"ab", b"b", b"c", b"cccc", b"\xff", b"\xff\xff"]
    start, end = rnd.choice(bounds) or None, rnd.choice(bounds) or None
    if start is not None and end is not None and start > end:
        start, end = end, start
    for reverse in (False, True):
        got = [k for k, _ in db.scan(start, end, reverse=reverse)]
        assert got == model.scan(start, end, reverse), (start, end, reverse)
    p = rnd.choice([b"a", b"aa", b"aab", b"b", b"\xff"])
    want = sorted(k for k in model.data if k.startswith(p))
    assert [k for k, _ in db.scan_prefix(p)] == want
    assert [k for k, _ in db.scan_prefix(p, reverse=True)] == want[::-1]
    # seek forward across segment boundaries
    it = db.scan()
    first = next(it, None)
    if first is not None:
        target = rnd.choice(sorted(model.data))
        if target > first[0]:
            it.seek(target)
            assert [k for k, _ in it] == model.scan(target, None, False)
    it = db.scan(reverse=True)
    first = next(it, None)
    if first is not None:
        target = rnd.choice(sorted(model.data))
        if target < first[0]:
            it.seek(target)
            assert [k for k, _ in it] == [k for k in model.scan(None, None, True) if k <= target]
    # durable reads see the same (everything was flushed to the WAL by then)
    db.flush()
    k = rnd.choice(sorted(model.data)) if model.data else b"aaa\x00"
    assert db.get(k, durability="remote") == model.data.get(k)
