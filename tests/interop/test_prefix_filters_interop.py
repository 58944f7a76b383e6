"""Interop: prefix bloom filters (``"_bf:p=<extractor>"``, ``":wh=0"``) both ways.

The official ``slatedb`` 0.17 package runs in a child process (this file doubles as the worker
script, see ``__main__``), as in ``test_segments_interop.py``. Its extractors are Python
``PrefixExtractor`` subclasses named ``fixed<N>`` that cut N bytes, like shale's built-in
:class:`shale.meta.segments.FixedPrefixExtractor`.

* :func:`test_shale_reads_official_prefix_filters`: the official writer, configured with
  ``FilterPolicy.bloom(10)``, ``bloom_with_options(BloomFilterOptions(10, True), fixed4)`` and
  ``bloom_with_options(BloomFilterOptions(8, False), fixed3)``, writes L0 SSTs and (its embedded
  compactor) a sorted run of several SSTs. Every SST's three filters are byte for byte what
  shale builds from that SST's rows, and shale, configured with the same names, reads what the
  official reader reads while its scans of absent prefixes skip SSTs.
* :func:`test_official_reads_shale_prefix_filters`: shale writes with
  ``filter_policies=("_bf:p=fixed4", "_bf:p=fixed3:wh=0")`` (L0 SSTs and a sorted run from its
  compactor), and the official reader, configured with the same two policies, reads exactly
  shale's data -- its ``sst_filter_negative_count`` metric shows it consulted shale's filters
  for point lookups and prefix scans.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shale.testing.script_worker import WorkerError, run_script, worker_main

pytestmark = pytest.mark.interop

DB_PATH = "db"
#: Budget of one official child process.
OFFICIAL_TIMEOUT_S = 150.0
#: How long the official embedded compactor may take.
COMPACTION_WAIT_S = 90.0
#: Key prefixes written; keys without a 4-byte (or 3-byte) prefix are written too.
PREFIXES = (b"aaaa", b"aaab", b"abcd", b"m\xff\x00z", b"zzzz")
SHORT_KEYS = (b"ab", b"abc", b"xyz", b"\xff")
#: Scans of the checks: present prefixes, absent ones (inside the SSTs' key ranges), short ones.
SCAN_PREFIXES = [b"aaaa", b"aaab", b"aaac", b"abcd", b"abce", b"m\xff\x00z", b"m\xff\x00y"]
SCAN_PREFIXES += [b"zzzz", b"zzzy", b"aa", b"abc", b"x", b""]
#: The official writer's policies: (bits_per_key, whole_key_filtering, fixed length or None).
OFFICIAL_POLICIES = [(10, True, None), (10, True, 4), (8, False, 3)]
OFFICIAL_NAMES = ["_bf", "_bf:p=fixed4", "_bf:p=fixed3:wh=0"]
#: shale's writer's policies, and the official reader's when it reads them.
SHALE_NAMES = ("_bf:p=fixed4", "_bf:p=fixed3:wh=0")
SHALE_POLICIES = [(10, True, 4), (10, False, 3)]


def _keys(n: int = 60) -> list[bytes]:
    return [p + b"%04d" % i for p in PREFIXES for i in range(n)] + list(SHORT_KEYS)


def _probe_keys() -> list[bytes]:
    absent = [b"aaac0001", b"abce0000", b"zzzy0059", b"aaaa9999", b"abd", b"a", b"zz"]
    return sorted(set(_keys()) | set(absent))


# --------------------------------------------------------------------------------------------
# shale side
# --------------------------------------------------------------------------------------------


def _shale_policies(specs: list[tuple[int, bool, int | None]]) -> list[Any]:
    from shale.meta.segments import FixedPrefixExtractor
    from shale.sst.filters import BloomFilterPolicy

    return [
        BloomFilterPolicy(
            bits,
            prefix_extractor=None if n is None else FixedPrefixExtractor(n),
            whole_key_filtering=whole,
        )
        for bits, whole, n in specs
    ]


def _shale_settings(names: tuple[str, ...]) -> Any:
    from shale.settings import Settings

    return Settings(
        filter_policies=names,
        min_filter_keys=10,
        compactor_options=None,
        garbage_collector_options=None,
        hide_expired=False,
        manifest_poll_interval=0.05,
        flush_interval=0.01,
    )


def _shale_read(db: Any) -> dict[str, Any]:
    return {
        "values": {k: db.get(k) for k in _probe_keys()},
        "prefixes": [list(db.scan_prefix(p)) for p in SCAN_PREFIXES],
        "reverse": [list(db.scan_prefix(p, reverse=True)) for p in SCAN_PREFIXES],
    }


def _compacted_ssts(store_dir: Path) -> list[Path]:
    return sorted((store_dir / DB_PATH / "compacted").glob("*.sst"))


def test_shale_reads_official_prefix_filters(tmp_path: Path) -> None:
    pytest.importorskip("slatedb")
    from shale.db import Db
    from shale.sst import SsTable
    from shale.sst.filters import decode_composite

    official_dir = tmp_path / "official"
    official = _run_official({"op": "write", "store_dir": str(official_dir)})
    m = official["manifest"]
    assert m["l0"] > 0 and m["runs"] == 1 and m["run_ssts"] > 1
    policies = _shale_policies(OFFICIAL_POLICIES)
    checked = 0
    for path in _compacted_ssts(official_dir):
        data = path.read_bytes()
        table = SsTable.from_bytes(data)
        if table.info.filter_len == 0:
            continue  # an SST of fewer than min_filter_keys rows
        info = table.info
        stored = decode_composite(table._chunk(info.filter_offset, info.filter_len, "filter"))
        assert [name for name, _ in stored] == OFFICIAL_NAMES
        keys = [r[0] for r in table.iter_rows()]
        for policy, (name, raw) in zip(policies, stored, strict=True):
            assert policy.name == name
            assert raw == policy.build(keys), (path.name, name)
        checked += 1
    assert checked >= m["l0"] + m["run_ssts"] - 1

    # shale, configured with the same names, reads what the official reader read
    copy = tmp_path / "copy"
    shutil.copytree(official_dir, copy)
    settings = _shale_settings(tuple(OFFICIAL_NAMES))
    with Db.open(str(copy / DB_PATH), settings, store_options={"fsync": False}) as db:
        assert [p.name for p in db.filter_policies] == OFFICIAL_NAMES
        got = _shale_read(db)
        assert got["values"] == official["read"]["values"]
        assert got["prefixes"] == official["read"]["prefixes"]
        assert got["reverse"] == [list(reversed(x)) for x in official["read"]["prefixes"]]
        assert db.metrics().get("sst_filter_prefix_negatives", 0) > 0


def test_official_reads_shale_prefix_filters(tmp_path: Path) -> None:
    pytest.importorskip("slatedb")
    from shale.db import Db
    from shale.objstore.local import LocalStore
    from shale.settings import CompactorOptions
    from shale.sst import SsTable
    from shale_compactor import FULL, Compactor

    store_dir = tmp_path / "shale"
    settings = _shale_settings(SHALE_NAMES)
    model: dict[bytes, bytes] = {}
    with Db.open(str(store_dir / DB_PATH), settings, store_options={"fsync": False}) as db:
        for r in range(4):
            for i, k in enumerate(_keys()):
                if (i + r) % 11 == 0:
                    db.delete(k)
                    model.pop(k, None)
                elif r == 0 or (i + r) % 3 == 0:
                    v = b"r%d-%d-" % (r, i) + b"x" * (40 + i % 40)
                    db.put(k, v)
                    model[k] = v
            db.flush(memtable=True)
        store = LocalStore(store_dir, fsync=False)
        with Compactor(store, DB_PATH, settings, options=CompactorOptions(max_sst_size=4096)) as c:
            c.submit(FULL)
            (report,) = c.run_once()
        assert report.status == "completed"
        db.refresh_manifest()
        for i, k in enumerate(_keys()[::3]):  # an L0 on top of the run
            v = b"l0-%d" % i
            db.put(k, v)
            model[k] = v
        db.flush(memtable=True)
        m = db.manifest()
        assert len(m.l0) == 1 and len(m.compacted) == 1 and len(m.compacted[0].ssts) > 1
        expected = _shale_read(db)
    names = set()
    for path in _compacted_ssts(store_dir):
        names.update(SsTable.from_bytes(path.read_bytes()).filter_names)
    assert names == set(SHALE_NAMES)
    assert expected["values"] == {k: model.get(k) for k in _probe_keys()}

    official = _run_official(
        {"op": "read", "store_dir": str(store_dir), "policies": SHALE_POLICIES}
    )
    assert official["values"] == expected["values"]
    assert official["prefixes"] == expected["prefixes"]
    # the official reader consulted shale's filters: some SSTs were ruled out
    assert official["negatives"]["prefix"] > 0
    assert official["negatives"]["point"] > 0


# --------------------------------------------------------------------------------------------
# The official worker (child process)
# --------------------------------------------------------------------------------------------


def _run_official(request: dict[str, Any]) -> Any:
    """Run ``request`` with the official package in a child process (this file as a script)."""
    timeout = OFFICIAL_TIMEOUT_S
    try:
        return run_script(__file__, {**request, "timeout": timeout}, timeout + 15.0)
    except WorkerError as exc:
        pytest.fail(f"official {exc}")


def _worker_main(argv: list[str]) -> int:
    return worker_main(argv, _dispatch)


def _official_policies(s: Any, specs: list[tuple[int, bool, int | None]]) -> list[Any]:
    class Fixed(s.PrefixExtractor):  # type: ignore[misc,name-defined]
        """The official side of shale's ``FixedPrefixExtractor``: ``fixed<n>``."""

        def __init__(self, n: int) -> None:
            self.n = n

        def name(self) -> str:
            return f"fixed{self.n}"

        def prefix_len(self, target: Any) -> int | None:
            key = target.key if target.is_POINT() else target.prefix
            return self.n if len(key) >= self.n else None

    out = []
    for bits, whole, n in specs:
        if n is None and whole:
            out.append(s.FilterPolicy.bloom(bits))
        else:
            options = s.BloomFilterOptions(bits_per_key=bits, whole_key_filtering=whole)
            out.append(s.FilterPolicy.bloom_with_options(options, None if n is None else Fixed(n)))
    return out


def _store(s: Any, store_dir: Path) -> Any:
    return s.ObjectStoreBuilder.from_url("file://" + str(store_dir.resolve())).build()


async def _write(s: Any, store_dir: Path) -> dict[str, Any]:
    store_dir.mkdir(parents=True)
    store = _store(s, store_dir)
    settings = s.Settings.default()
    settings.set("garbage_collector_options", "null")
    for key, value in {
        "min_filter_keys": "10",
        "compactor_options.poll_interval": '"50ms"',
        "compactor_options.commit_compacted_interval": '"50ms"',
        "compactor_options.worker.compactions_poll_interval": '"50ms"',
        "compactor_options.worker.max_sst_size": "4096",
        "compactor_options.worker.max_subcompactions": "1",
        "manifest_poll_interval": '"100ms"',
    }.items():
        settings.set(key, value)
    b = s.DbBuilder(DB_PATH, store)
    b.with_settings(settings)
    policies = _official_policies(s, OFFICIAL_POLICIES)
    assert [p.name() for p in policies] == OFFICIAL_NAMES
    b.with_filter_policies(policies)
    db = await asyncio.wait_for(b.build(), 30.0)
    mt = s.FlushOptions(flush_type=s.FlushType.MEM_TABLE)
    try:
        for r in range(4):
            wb = s.WriteBatch()
            for i, k in enumerate(_keys()):
                if (i + r) % 11 == 0:
                    wb.delete(k)
                elif r == 0 or (i + r) % 3 == 0:
                    wb.put(k, b"r%d-%d-" % (r, i) + b"x" * (40 + i % 40))
            await db.write(wb)
            await db.flush_with_options(mt)
        admin = s.AdminBuilder(DB_PATH, store).build()
        deadline = time.monotonic() + COMPACTION_WAIT_S
        while True:
            m = await admin.read_manifest(None)
            if m.compacted and not m.l0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the official compactor did not compact: {m}")
            await asyncio.sleep(0.1)
        for i, k in enumerate(_keys()[::3]):  # an L0 on top of the run
            await db.put(k, b"l0-%d" % i)
        await db.flush_with_options(mt)
        m = await admin.read_manifest(None)
    finally:
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), 30.0
        )
    manifest = {
        "l0": len(m.l0),
        "runs": len(m.compacted),
        "run_ssts": sum(len(r.sst_views) for r in m.compacted),
    }
    return {"manifest": manifest, "read": await _read(s, store_dir, OFFICIAL_POLICIES)}


async def _collect(it: Any) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    while True:
        batch = await it.next_batch(1024)
        if not batch:
            return out
        out.extend((bytes(kv.key), bytes(kv.value)) for kv in batch)


async def _read(
    s: Any, store_dir: Path, policies: list[tuple[int, bool, int | None]]
) -> dict[str, Any]:
    """A FOLLOW_LATEST ``DbReader`` (writes nothing) with ``policies``: gets, prefix scans,
    and its filter metrics."""
    recorder = s.DefaultMetricsRecorder()
    b = s.DbReaderBuilder(DB_PATH, _store(s, store_dir))
    b.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
    b.with_filter_policies(_official_policies(s, policies))
    b.with_metrics_recorder(recorder)
    reader = await b.build()
    try:
        values: dict[bytes, bytes | None] = {}
        for k in _probe_keys():
            got = await reader.get(k)
            values[k] = None if got is None else bytes(got)
        everything = s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
        prefixes = [await _collect(await reader.scan_prefix(p, everything)) for p in SCAN_PREFIXES]
    finally:
        await asyncio.wait_for(reader.shutdown(), 30.0)
    negatives: dict[str, int] = {}
    for metric in recorder.metrics_by_name("slatedb.db.sst_filter_negative_count"):
        kind = {label.key: label.value for label in metric.labels}.get("kind", "?")
        negatives[kind] = negatives.get(kind, 0) + int(metric.value[0])
    return {"values": values, "prefixes": prefixes, "negatives": negatives}


async def _dispatch(request: dict[str, Any]) -> Any:
    import slatedb.uniffi as s  # only the worker loads the native library

    op = request["op"]
    if op == "write":
        return await _write(s, Path(request["store_dir"]))
    if op == "read":
        return await _read(s, Path(request["store_dir"]), request["policies"])
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv))
