"""Per-segment clone callbacks: ``Admin.clone(..., segment_filter=, segment_projection=)``
(SlateDB's ``CloneBuilder::with_segment_filter`` / ``with_segment_projection``).

Real stores, shale's real writer, compactor and clone protocol; the crash case runs the
protocol's own step functions and stops where a crash would. The official 0.17 Python binding
has no such callbacks (its ``CloneBuilder`` offers ``with_projection_range`` only), so there is
no interop case here.
"""

from __future__ import annotations

import asyncio

import pytest

from shale import Admin, Db, InvalidError, Settings
from shale.meta import clone as clone_mod
from shale.meta.locator import manifest_views
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale.meta.projection import key_range
from shale.objstore import ObjectStore
from shale.objstore.memory import MemoryStore

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
SEG = FAST.replace(prefix_extractor="fixed3")
PREFIXES = (b"aaa", b"bbb", b"ccc")
SEG_KEYS = [p + b"%03d" % i for p in PREFIXES for i in range(20)]
FULL = (None, None)


def make_db(
    store: ObjectStore, root: str, keys: list[bytes], settings: Settings = SEG
) -> dict[bytes, bytes]:
    """``keys`` written in two L0s (every fifth one overwritten in the second), flushed."""
    expected = {}
    with Db.open(root, settings, object_store=store) as db:
        for k in keys:
            db.put(k, root.encode() + b":" + k)
            expected[k] = root.encode() + b":" + k
        db.flush(memtable=True)
        for k in keys[::5]:
            db.put(k, b"v2:" + k)
            expected[k] = b"v2:" + k
        db.flush(memtable=True)
    return expected


def reads(store: ObjectStore, root: str, settings: Settings = SEG) -> dict[bytes, bytes]:
    with Db.open(root, settings, object_store=store) as db:
        got = dict(db.scan())
        probe = [*got, *SEG_KEYS, b"a", b"bbb", b"zzz"]
        assert {k: db.get(k) for k in probe} == {k: got.get(k) for k in probe}
        assert [k for k, _ in db.scan(reverse=True)] == sorted(got, reverse=True)
        assert dict(db.scan(b"bbb", b"ccc")) == {
            k: v for k, v in got.items() if b"bbb" <= k < b"ccc"
        }
        return got


def manifest(store: ObjectStore, root: str):  # type: ignore[no-untyped-def]
    return StoredManifest.load(ManifestStore(store, root)).manifest


def listing(store: ObjectStore) -> dict[str, bytes]:
    return {m.key: store.get(m.key) for m in store.list("")}


def within(want: dict[bytes, bytes], *ranges: tuple[bytes, bytes]) -> dict[bytes, bytes]:
    return {k: v for k, v in want.items() if any(lo <= k < hi for lo, hi in ranges)}


def check_external(store: ObjectStore, root: str) -> None:
    """Every external SST id the clone lists is one it reads, and every entry lists some."""
    m = manifest(store, root)
    live = {v.sst.id for v in manifest_views(m)}
    for ext in m.external_dbs:
        assert ext.sst_ids and set(ext.sst_ids) <= live


def test_filter_drops_a_segment_and_is_asked_for_every_tree() -> None:
    store = MemoryStore()
    want = make_db(store, "s/src", SEG_KEYS)
    asked: list[bytes] = []

    def keep(prefix: bytes) -> bool:
        asked.append(prefix)
        return prefix != b"bbb"

    Admin("s/src", object_store=store).clone("s/c", segment_filter=keep)
    assert set(asked) == {b"", *PREFIXES}  # the root tree is asked with b""
    m = manifest(store, "s/c")
    assert [s.prefix for s in m.segments] == [b"aaa", b"ccc"]
    assert reads(store, "s/c") == {k: v for k, v in want.items() if not k.startswith(b"bbb")}
    check_external(store, "s/c")
    assert reads(store, "s/src") == want  # the source is untouched


def test_projection_narrows_one_segment_and_keeps_the_others() -> None:
    store = MemoryStore()
    want = make_db(store, "s/src", SEG_KEYS)

    def project(prefix: bytes) -> tuple[bytes | None, bytes | None]:
        return (b"bbb005", b"bbb015") if prefix == b"bbb" else FULL

    Admin("s/src", object_store=store).clone("s/c", segment_projection=project)
    got = reads(store, "s/c")
    assert got == within(want, (b"aaa", b"bbb"), (b"bbb005", b"bbb015"), (b"ccc", b"ccd"))
    m = manifest(store, "s/c")
    assert [s.prefix for s in m.segments] == list(PREFIXES)
    bbb = next(s for s in m.segments if s.prefix == b"bbb")
    assert all(v.visible_range is not None for v in bbb.l0)
    check_external(store, "s/c")
    # an open end is the segment's edge; a segment projected to nothing it holds is dropped
    Admin("s/src", object_store=store).clone(
        "s/d",
        segment_projection=lambda p: (b"ccc900", None) if p == b"ccc" else (None, b"%s010" % p),
    )
    assert [s.prefix for s in manifest(store, "s/d").segments] == [b"aaa", b"bbb"]
    assert reads(store, "s/d") == within(want, (b"aaa", b"aaa010"), (b"bbb", b"bbb010"))
    check_external(store, "s/d")


def test_segment_projection_intersects_the_global_projection() -> None:
    store = MemoryStore()
    want = make_db(store, "s/src", SEG_KEYS)
    ranges = {b"aaa": (None, b"aaa015"), b"bbb": (b"bbb005", None), b"ccc": (b"ccc002", None)}
    Admin("s/src", object_store=store).clone(
        "s/c",
        projection=(b"aaa010", b"bbb010"),
        segment_projection=lambda p: ranges.get(p, FULL),
    )
    # aaa: [aaa010, aaa015); bbb: [bbb005, bbb010); ccc: empty intersection, dropped
    assert [s.prefix for s in manifest(store, "s/c").segments] == [b"aaa", b"bbb"]
    assert reads(store, "s/c") == within(want, (b"aaa010", b"aaa015"), (b"bbb005", b"bbb010"))
    check_external(store, "s/c")
    # with a filter as well
    Admin("s/src", object_store=store).clone(
        "s/d",
        projection=(b"aaa010", None),
        segment_filter=lambda p: p != b"aaa",
        segment_projection=lambda p: ranges.get(p, FULL),
    )
    assert reads(store, "s/d") == within(want, (b"bbb005", b"bbc"), (b"ccc002", b"ccd"))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"segment_projection": lambda p: (b"a", b"m")}, "not contained in the segment"),
        ({"segment_projection": lambda p: (None, b"bbc001")}, "not contained in the segment"),
        ({"segment_projection": lambda p: (b"aa", None)}, "not contained in the segment"),
        ({"segment_projection": lambda p: (p + b"5", p + b"5")}, "empty"),
        ({"segment_projection": lambda p: (p + b"5", p + b"1")}, "empty"),
        ({"segment_projection": lambda p: [None, None]}, r"\(start, end\) tuple"),
        ({"segment_projection": lambda p: (1, None)}, "bytes or None"),
        ({"segment_filter": lambda p: 1}, "bool"),
        ({"segment_filter": "aaa"}, "callable"),
        ({"segment_projection": 3}, "callable"),
    ],
)
def test_invalid_callbacks_write_nothing(kwargs: dict[str, object], error: str) -> None:
    store = MemoryStore()
    make_db(store, "s/src", SEG_KEYS)
    before = listing(store)
    with pytest.raises(InvalidError, match=error) as info:
        Admin("s/src", object_store=store).clone("s/c", **kwargs)  # type: ignore[arg-type]
    if "callable" not in error:
        assert info.value.detail["prefix"] in (b"", *PREFIXES)
    assert listing(store) == before  # no manifest at the target, no checkpoint in the source
    assert StoredManifest.try_load(ManifestStore(store, "s/c")) is None


def test_invalid_projection_names_the_prefix() -> None:
    store = MemoryStore()
    make_db(store, "s/src", SEG_KEYS)
    with pytest.raises(InvalidError, match="not contained") as info:
        Admin("s/src", object_store=store).clone(
            "s/c", segment_projection=lambda p: (b"a", b"m") if p == b"bbb" else FULL
        )
    assert info.value.detail["prefix"] == b"bbb"
    assert StoredManifest.try_load(ManifestStore(store, "s/c")) is None


def test_a_callback_that_raises_propagates_and_writes_nothing() -> None:
    store = MemoryStore()
    make_db(store, "s/src", SEG_KEYS)
    before = listing(store)

    def boom(prefix: bytes) -> bool:
        if prefix == b"ccc":
            raise ValueError("no ccc here")
        return True

    with pytest.raises(ValueError, match="no ccc here") as info:
        Admin("s/src", object_store=store).clone("s/c", segment_filter=boom)
    assert any("segment_filter" in n and "b'ccc'" in n for n in info.value.__notes__)
    with pytest.raises(ValueError, match="no ccc here"):
        Admin("s/src", object_store=store).clone(
            "s/c", sources=["s/src"], segment_projection=lambda p: (boom(p), None) and FULL
        )
    assert listing(store) == before


def test_unsegmented_source_root_tree_is_asked_with_the_empty_prefix() -> None:
    store = MemoryStore()
    keys = [b"k%03d" % i for i in range(60)]
    want = make_db(store, "s/src", keys, FAST)
    asked: list[bytes] = []

    def project(prefix: bytes) -> tuple[bytes | None, bytes | None]:
        asked.append(prefix)
        return (b"k010", b"k030")

    admin = Admin("s/src", object_store=store)
    admin.clone("s/c", segment_projection=project)
    assert set(asked) == {b""}
    assert reads(store, "s/c", FAST) == within(want, (b"k010", b"k030"))
    check_external(store, "s/c")
    # the filter drops the root tree: an empty clone, referencing nothing, still writable
    admin.clone("s/d", segment_filter=lambda p: p != b"")
    m = manifest(store, "s/d")
    assert not m.l0 and not m.compacted
    assert [(e.path, e.sst_ids) for e in m.external_dbs] == [("s/src", [])]  # as SlateDB
    with Db.open("s/d", FAST, object_store=store) as db:
        assert dict(db.scan()) == {}
        db.put(b"new", b"1")
        db.flush(memtable=True)
    assert reads(store, "s/d", FAST) == {b"new": b"1"}


def test_a_source_wal_with_rows_is_refused_for_callbacks_too() -> None:
    store = MemoryStore()
    make_db(store, "s/src", SEG_KEYS)
    with Db.open("s/src", SEG, object_store=store) as db:
        db.put(b"bbb500", b"in the WAL only")
    before = listing(store)
    for kwargs in ({"segment_filter": lambda p: True}, {"segment_projection": lambda p: FULL}):
        with pytest.raises(InvalidError, match="WAL"):
            Admin("s/src", object_store=store).clone("s/c", **kwargs)  # type: ignore[arg-type]
    assert listing(store) == before
    # without any projection the WAL is copied, as before
    Admin("s/src", object_store=store).clone("s/c")
    assert reads(store, "s/c")[b"bbb500"] == b"in the WAL only"


def test_union_with_callbacks() -> None:
    store = MemoryStore()
    a_keys = [p + b"%03d" % i for p in (b"aaa", b"bbb") for i in range(20)]
    b_keys = [p + b"%03d" % i for p in (b"bbb", b"ccc") for i in range(20, 40)]
    want = make_db(store, "s/a", a_keys) | make_db(store, "s/b", b_keys)
    admin = Admin("s/a", object_store=store)
    asked: list[bytes] = []

    def keep(prefix: bytes) -> bool:
        asked.append(prefix)
        return prefix != b"aaa"

    r = admin.clone(
        "s/u",
        sources=["s/a", "s/b"],
        segment_filter=keep,
        segment_projection=lambda p: (b"bbb010", b"bbb030") if p == b"bbb" else FULL,
    )
    assert {b"aaa", b"bbb", b"ccc"} <= set(asked)
    assert set(r.final_checkpoint_ids) == {"s/a", "s/b"}
    assert [s.prefix for s in manifest(store, "s/u").segments] == [b"bbb", b"ccc"]
    assert reads(store, "s/u") == within(want, (b"bbb010", b"bbb030"), (b"ccc", b"ccd"))
    check_external(store, "s/u")
    # a source left with no SST gets no entry (SlateDB's union: it contributes nothing)
    r = admin.clone("s/v", sources=["s/a", "s/b"], segment_filter=lambda p: p == b"ccc")
    assert set(r.final_checkpoint_ids) == {"s/b"}
    assert reads(store, "s/v") == within(want, (b"ccc", b"ccd"))
    # a single source in sources= is a plain clone, callbacks included
    admin.clone("s/w", sources=["s/a"], segment_filter=lambda p: p == b"aaa")
    assert reads(store, "s/w") == within(want, (b"aaa", b"aab"))
    # an invalid projection is refused before anything is written
    before = listing(store)
    with pytest.raises(InvalidError, match="not contained") as info:
        admin.clone("s/x", sources=["s/a", "s/b"], segment_projection=lambda p: (b"zzz", None))
    assert info.value.detail["prefix"] in (b"", b"aaa", b"bbb", b"ccc")
    assert listing(store) == before


def test_interrupted_clone_with_callbacks_is_finished_the_same() -> None:
    store = MemoryStore()
    want = make_db(store, "s/src", SEG_KEYS)
    admin = Admin("s/src", object_store=store)
    filt = lambda p: p != b"aaa"  # noqa: E731
    proj = lambda p: (b"bbb003", b"bbb017") if p == b"bbb" else FULL  # noqa: E731
    expected = within(want, (b"bbb003", b"bbb017"), (b"ccc", b"ccd"))
    # crash after step 2: an uninitialized, already projected manifest
    plan = clone_mod._Projection(key_range(b"bbb", None), filt, proj)
    stored = clone_mod._start(
        store, "s/src", "s/c", ManifestStore(store, "s/c"), None, plan, admin._now_s(), None
    )
    first = stored.manifest
    assert not first.initialized and [s.prefix for s in first.segments] == [b"bbb", b"ccc"]
    r = admin.clone("s/c", projection=(b"bbb", None), segment_filter=filt, segment_projection=proj)
    assert r.created
    done = manifest(store, "s/c")
    assert done.initialized and done.segments == first.segments
    assert reads(store, "s/c") == expected
    # a finished clone is returned unchanged
    assert not admin.clone(
        "s/c", projection=(b"bbb", None), segment_filter=filt, segment_projection=proj
    ).created
    assert reads(store, "s/c") == expected


def test_clone_with_callbacks_is_writable_and_compactable() -> None:
    shale_compactor = pytest.importorskip("shale_compactor")
    from shale.settings import CompactorOptions

    store = MemoryStore()
    want = make_db(store, "s/src", SEG_KEYS)
    Admin("s/src", object_store=store).clone(
        "s/c",
        segment_filter=lambda p: p != b"ccc",
        segment_projection=lambda p: (None, b"aaa010") if p == b"aaa" else FULL,
    )
    expected = within(want, (b"aaa", b"aaa010"), (b"bbb", b"bbc"))
    with Db.open("s/c", SEG, object_store=store) as db:
        for k in (b"aaa015", b"bbb001", b"ccc001", b"ddd001"):
            db.put(k, b"new")
            expected[k] = b"new"
        db.flush(memtable=True)
    opts = CompactorOptions(poll_interval=0.05)
    prefixes = [s.prefix for s in manifest(store, "s/c").segments]
    assert prefixes == [b"aaa", b"bbb", b"ccc", b"ddd"]
    with shale_compactor.Compactor(store, "s/c", SEG, options=opts) as c:
        for prefix in prefixes:
            c.submit(shale_compactor.FULL, segment=prefix)
        reports = c.run_once(timeout=60)
    assert len(reports) == 4 and all(r.status == "completed" for r in reports)
    m = manifest(store, "s/c")
    assert all(not s.l0 and len(s.compacted) == 1 for s in m.segments)
    assert reads(store, "s/c") == expected
    assert reads(store, "s/src") == want


def test_async_admin_forwards_the_callbacks() -> None:
    from shale.aio import AsyncAdmin

    store = MemoryStore()
    want = make_db(store, "s/src", SEG_KEYS)

    async def go() -> None:
        async with AsyncAdmin("s/src", object_store=store) as admin:
            r = await admin.clone("s/c", segment_filter=lambda p: p == b"bbb")
            assert r.created

    asyncio.run(go())
    assert reads(store, "s/c") == within(want, (b"bbb", b"bbc"))
