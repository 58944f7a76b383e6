"""The executor's kernel path (shale_compactor.subcompactions) against its row pipeline.

Both twins of the compaction kernel (``shale.sst._compact_py`` / ``_compact_c``) on random
sources -- overlapping L0 SSTs and a sorted run, several versions per key, tombstones, expiry,
create times, duplicate ``(key, seq)`` rows, visible ranges -- under every retention setting:

* one range: the output SSTs are byte for byte those of the row pipeline (same split points);
* several ranges (subcompactions): the same rows, in key-ordered, non-overlapping outputs
  reported in key order; a failing range fails the job with its error and leaves a reported
  prefix that a resume completes;
* a merge operand without an operator is the pipeline's ``InvalidError``.
"""

from __future__ import annotations

import itertools
import random
import threading
from types import ModuleType
from typing import Any

import pytest

from shale import _accel
from shale.errors import DataError, InvalidError
from shale.fbs.manifest import (
    BOUND_EXCLUDED,
    BOUND_INCLUDED,
    Bound,
    BytesRange,
    CompactedSst,
    SortedRun,
    SstView,
)
from shale.ids import Ulid, compacted_path
from shale.objstore.memory import MemoryStore
from shale.row import MERGE, TOMBSTONE, VALUE
from shale.settings import CompactorOptions, Settings
from shale.sst import SsTable, SstBuilder
from shale_compactor import subcompactions
from shale_compactor.executor import CompactionExecutor, CompactionJob

ROOT = "testdb"
Row = tuple[Any, ...]

TWINS = _accel.twins("compact")


@pytest.fixture(params=sorted(TWINS))
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    mod = TWINS[request.param]
    monkeypatch.setattr(subcompactions, "CompactionKernel", mod.Kernel)
    return mod


class NoFilters:
    def create_compaction_filter(self, context: Any) -> None:
        return None


def executor(
    store: MemoryStore, *, max_sst_size: int, subs: int = 1, kernel: bool = True, **kw: Any
) -> CompactionExecutor:
    s = Settings(
        compactor_options=CompactorOptions(max_sst_size=max_sst_size, max_subcompactions=subs),
        min_filter_keys=10,
    )
    object.__setattr__(s, "block_size", 256)  # many blocks from few rows
    ex = CompactionExecutor(
        store, ROOT, settings=s, filter_supplier=NoFilters(), rand=random.Random(7), **kw
    )
    ex.use_kernel = kernel
    return ex


def upload(store: MemoryStore, rows: list[Row], rng: random.Random) -> CompactedSst:
    b = SstBuilder(block_size=256)
    b.add_rows(rows)
    sid = Ulid.new(1_700_000_000_000, rng)
    store.put(compacted_path(ROOT, sid), b.finish())
    return CompactedSst(sid, b.info, 2)


def random_rows(rng: random.Random, keys: list[bytes], seqs: list[int]) -> list[Row]:
    rows = []
    for key in sorted(rng.sample(keys, rng.randint(1, len(keys)))):
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            seq = seqs.pop()
            kind = rng.choice([VALUE, VALUE, VALUE, TOMBSTONE])
            value = b"" if kind == TOMBSTONE else rng.randbytes(rng.choice([0, 5, 40, 300]))
            expire = rng.choice([None, None, None, 5, 50, 500])
            create = rng.choice([None, None, 7, 2**40])
            rows.append((key, seq, kind, value, expire, create))
    rows.sort(key=lambda r: (r[0], -r[1]))
    return rows


def random_job(seed: int, store: MemoryStore, **kw: Any) -> CompactionJob:
    rng = random.Random(seed)
    keys = [b"k%04d" % i + b"x" * rng.choice([0, 0, 3, 20]) for i in range(300)]
    seqs = list(range(1, 5000))
    rng.shuffle(seqs)
    l0_rows = [random_rows(rng, keys, seqs) for _ in range(4)]
    if seed % 2:  # a duplicate (key, seq) in two sources: the later (older source) row wins
        l0_rows[1].append((b"k9999", 9000, VALUE, b"newer-source", None, None))
        l0_rows[2].append((b"k9999", 9000, VALUE, b"older-source", None, None))
    l0 = [SstView(s.id, s, None) for s in (upload(store, r, rng) for r in l0_rows)]
    if seed % 3 == 0:  # a visible range on one L0
        rng_ = BytesRange(Bound(BOUND_INCLUDED, b"k0050"), Bound(BOUND_EXCLUDED, b"k0200"))
        l0[0] = SstView(Ulid.new(1, rng), l0[0].sst, rng_)
    run_rows = sorted(random_rows(rng, keys, seqs), key=lambda r: (r[0], -r[1]))
    chunks = [run_rows[i : i + 60] for i in range(0, len(run_rows), 60)]
    run = SortedRun(1, [SstView(s.id, s, None) for s in (upload(store, c, rng) for c in chunks)])
    return CompactionJob(
        id=Ulid.new(0, rng),
        l0=l0,
        runs=[run],
        destination=2,
        is_dest_last_run=kw.get("last_run", False),
        retention_min_seq=kw.get("min_seq"),
        compaction_clock_tick=kw.get("tick", 0),
        resume_outputs=kw.get("resume", []),
    )


def execute(ex: CompactionExecutor, j: CompactionJob) -> list[CompactedSst]:
    reported: list[CompactedSst] = []
    outs = ex.execute(j, on_output=reported.append)
    assert outs == list(j.resume_outputs) + reported  # reported in key order, as returned
    return outs


def blobs(store: MemoryStore, outs: list[CompactedSst]) -> list[bytes]:
    return [store.get(compacted_path(ROOT, s.id)) for s in outs]


def rows_of(store: MemoryStore, outs: list[CompactedSst]) -> list[Row]:
    rows: list[Row] = []
    for s in outs:
        rows += SsTable.open(store, compacted_path(ROOT, s.id)).rows()
    return rows


SETTINGS = [
    {"min_seq": None},
    {"min_seq": 2500},
    {"min_seq": 0, "last_run": True},
    {"min_seq": None, "last_run": True, "tick": 60},
    {"min_seq": 4000, "tick": 600},
]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("opts", SETTINGS)
def test_one_range_is_byte_identical_to_the_pipeline(
    twin: ModuleType, seed: int, opts: dict[str, Any]
) -> None:
    store = MemoryStore()
    j = random_job(seed, store, **opts)
    want = execute(executor(store, max_sst_size=4000, kernel=False), j)
    got = execute(executor(store, max_sst_size=4000), j)
    assert len(want) > 2
    assert blobs(store, got) == blobs(store, want)
    assert [s.info for s in got] == [s.info for s in want]


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_ranges_write_the_same_rows_in_key_order(
    twin: ModuleType, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subcompactions, "MIN_RANGE_BYTES", 1)
    store = MemoryStore()
    j = random_job(seed, store, min_seq=1000, last_run=seed % 2 == 0, tick=60)
    want = execute(executor(store, max_sst_size=6000, kernel=False), j)
    ex = executor(store, max_sst_size=6000, subs=3)
    cuts = subcompactions.split_points(ex, j, None, 3)
    assert len(cuts) == 2
    got = execute(ex, j)
    assert rows_of(store, got) == rows_of(store, want)
    bounds = [(s.info.first_entry, s.info.last_entry) for s in got]
    # (one key's versions may continue in the next output of the same range)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(bounds))
    for cut in cuts:  # no output straddles a cut
        assert all(not (first < cut <= last) for first, last in bounds)


def test_a_failing_range_fails_the_job_and_a_resume_completes_it(
    twin: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subcompactions, "MIN_RANGE_BYTES", 1)
    store = MemoryStore()
    j = random_job(8, store, min_seq=None)
    want = rows_of(store, execute(executor(store, max_sst_size=3000, kernel=False), j))
    ex = executor(store, max_sst_size=3000, subs=3)
    real = subcompactions._run_range
    calls = []
    first_output = threading.Event()

    def flaky(ex_: Any, job_: Any, tables: Any, lo: Any, hi: Any, *a: Any) -> Any:
        calls.append(lo)
        if lo is not None and hi is None:  # the last range fails once range 0 wrote one
            first_output.wait(30)
            raise DataError("injected")
        return real(ex_, job_, tables, lo, hi, *a)

    def report(sst: CompactedSst) -> None:
        reported.append(sst)
        first_output.set()

    monkeypatch.setattr(subcompactions, "_run_range", flaky)
    reported: list[CompactedSst] = []
    with pytest.raises(DataError, match="injected"):
        ex.execute(j, on_output=report)
    assert len(calls) == 3 and reported
    # what was reported is a prefix of the full output, in key order
    assert rows_of(store, reported) == want[: len(rows_of(store, reported))]
    monkeypatch.setattr(subcompactions, "_run_range", real)
    resumed = CompactionJob(**{**j.__dict__, "resume_outputs": reported})
    outs = execute(ex, resumed)
    assert rows_of(store, outs) == want


def test_merge_operand_without_operator(twin: ModuleType) -> None:
    store = MemoryStore()
    rng = random.Random(3)
    a = upload(store, [(b"a", 3, VALUE, b"x", None, None), (b"b", 2, MERGE, b"y", None, None)], rng)
    j = CompactionJob(Ulid.new(0, rng), [SstView(a.id, a, None)], [], 1, False, None, 0)
    for kernel in (False, True):
        with pytest.raises(InvalidError, match="merge operator missing") as info:
            execute(executor(store, max_sst_size=4000, kernel=kernel), j)
        assert info.value.detail == {"key": b"b", "seq": 2}


def test_corrupt_block_is_a_data_error(twin: ModuleType) -> None:
    store = MemoryStore()
    rng = random.Random(4)
    sst = upload(
        store, [(b"k%03d" % i, i + 1, VALUE, b"v" * 50, None, None) for i in range(40)], rng
    )
    path = compacted_path(ROOT, sst.id)
    data = bytearray(store.get(path))
    data[300] ^= 0xFF
    store.put(path, bytes(data))
    j = CompactionJob(Ulid.new(0, rng), [SstView(sst.id, sst, None)], [], 1, False, None, 0)
    with pytest.raises(DataError, match="checksum mismatch"):
        execute(executor(store, max_sst_size=4000), j)


# -- outputs written by the kernel itself (stores offering the output file) -----------------------


def _local_copy(src: MemoryStore, path: Any) -> Any:
    from shale.objstore.local import LocalStore

    local = LocalStore(str(path))
    for meta in src.list(""):
        local.put(meta.key, src.get(meta.key))
    return local


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernel_written_outputs_are_identical(
    twin: ModuleType, seed: int, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local store hands the kernel the output file (``fileno``): the kernel writes the data
    blocks itself, with periodic syncs; the SSTs are byte for byte those handed over piece by
    piece to a store that only takes ``put``, in one range and in several."""
    from shale_compactor import outputs

    monkeypatch.setattr(outputs, "SYNC_EVERY_BYTES", 1500)  # a sync every few blocks
    monkeypatch.setattr(subcompactions, "DIRECT_OUT_BYTES", 1)  # return after every write
    from shale.metrics import MetricsRegistry
    from shale.objstore.instrumented import InstrumentedStore

    mem = MemoryStore()
    j = random_job(seed, mem, min_seq=1000, last_run=seed % 2 == 0, tick=60)
    local = _local_copy(mem, tmp_path / "store")
    if seed == 2:  # as a Db's compactor sees its store: counted, forwarding the file
        local = InstrumentedStore(local, MetricsRegistry())
    want = execute(executor(mem, max_sst_size=4000), j)
    got = execute(executor(local, max_sst_size=4000), j)
    assert len(want) > 2
    assert [local.get(compacted_path(ROOT, s.id)) for s in got] == blobs(mem, want)
    assert [s.info for s in got] == [s.info for s in want]
    monkeypatch.setattr(subcompactions, "MIN_RANGE_BYTES", 1)
    got = execute(executor(local, max_sst_size=4000, subs=3), j)
    assert rows_of(local, got) == rows_of(mem, want)
    staged = [p for p in (tmp_path / "store").rglob("*") if p.name.startswith(".tmp-")]
    assert staged == []


def test_kernel_writes_large_outputs_in_pieces(twin: ModuleType, tmp_path: Any) -> None:
    """Outputs of several MiB: the compiled kernel writes finished blocks every MiB while it
    merges (not only when it returns); the files equal the piece-by-piece ones."""
    rng = random.Random(11)
    mem = MemoryStore()
    seqs = iter(range(1, 10**6))
    l0 = []
    for part in range(2):
        rows = [
            (b"key%07d" % i, next(seqs), VALUE, rng.randbytes(200), None, None)
            for i in range(part, 24_000, 2)
        ]
        s = upload(mem, rows, rng)
        l0.append(SstView(s.id, s, None))
    j = CompactionJob(
        id=Ulid.new(0, rng),
        l0=l0,
        runs=[],
        destination=0,
        is_dest_last_run=True,
        retention_min_seq=None,
        compaction_clock_tick=0,
        resume_outputs=[],
    )
    local = _local_copy(mem, tmp_path / "store")
    want = execute(executor(mem, max_sst_size=3 << 20), j)
    got = execute(executor(local, max_sst_size=3 << 20), j)
    assert len(want) == 2
    assert [local.get(compacted_path(ROOT, s.id)) for s in got] == blobs(mem, want)


def test_a_failed_direct_write_fails_the_job_as_a_store_error(
    twin: ModuleType, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the kernel makes itself that fails (here: the file descriptor is closed under
    it) is the store's error, the job fails, and no staging file is left."""
    from shale.objstore import ObjectStoreError
    from shale.objstore.local import LocalObjectWriter

    mem = MemoryStore()
    j = random_job(2, mem)
    local = _local_copy(mem, tmp_path / "store")
    real = LocalObjectWriter.fileno

    def broken(self: LocalObjectWriter) -> int:
        real(self)
        return 10**6  # not an open file: EBADF

    monkeypatch.setattr(LocalObjectWriter, "fileno", broken)
    with pytest.raises(ObjectStoreError):
        execute(executor(local, max_sst_size=4000), j)
    staged = [p for p in (tmp_path / "store").rglob("*") if p.name.startswith(".tmp-")]
    assert staged == []
