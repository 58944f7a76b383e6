"""Oracle fixtures: real databases written by the official ``slatedb`` 0.17.0 package.

The official package (``import slatedb.uniffi``) is the ground truth shale must match
byte-for-byte (FORMAT.md section 13). This conftest

* generates a fixed set of small databases once per session (:func:`official_dbs`), each in its
  own ``file://`` object store, database path ``"db"``, so its objects land at
  ``<store_dir>/db/{manifest,wal,compacted,compactions}/...``;
* records what the official package reads back from each: ``get`` and ``get_key_value`` for every
  key ever written, a full scan, the latest manifest (via ``Admin``) and the rows of every
  non-empty WAL file (via ``SlateDbWalReader``);
* offers :class:`OfficialReader` (fixture :func:`official_reader`) to read ANY database directory,
  for instance one that shale wrote, with the official package.
* builds official clones (:func:`official_clones`): a parent and its clones made with the
  official ``CloneBuilder`` in one store, at ``dbs/<name>``, with what the official reader reads.

Isolation: every use of the official package runs in a **child process** (this file doubles as the
worker script, see ``__main__`` at the bottom) with a hard timeout. A hang or a native crash in
the oracle therefore fails one test cleanly instead of killing or freezing pytest, the worker's
asyncio loop never meets pytest's ``filterwarnings = error``, and every database handle is shut
down in a ``finally`` block. Results cross the process boundary as pickled plain data.

How ``expected`` / ``scan`` / ``key_values`` are read: after the writer has shut down, the
database is opened with a ``DbReader`` in ``ReaderMode.FOLLOW_LATEST`` mode, which replays the WAL
after ``replay_after_wal_id`` and writes **nothing** (no checkpoint, no fence, no manifest); the
generator checks that the file listing is unchanged afterwards. Reopening a writable ``Db`` would
fence (new manifest versions, a zero-length WAL) and possibly flush, so it is never done here.

Timestamps: rows written with ``Ttl.EXPIRE_AT_MILLIS(1000)`` are expired at generation time; rows
written with :data:`LONG_TTL_MS` stay live for a day, so a resolver run during the session sees
the same live set the official reader saw.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shale.testing.script_worker import WorkerError, run_script, worker_main

logger = logging.getLogger(__name__)

#: Database path inside every generated object store.
DB_PATH = "db"
#: TTL of the "live" TTL rows: one day, far beyond any test session.
LONG_TTL_MS = 86_400_000
#: ``expire_ts`` of the "already expired" rows (1970-01-01T00:00:01Z).
EXPIRED_AT_MS = 1000
#: Wall-clock budget of the whole generation child process.
GENERATE_TIMEOUT_S = 240.0
#: Default budget of one :class:`OfficialReader` call.
READ_TIMEOUT_S = 60.0
#: How long the ``compacted`` shape may wait for the embedded compactor.
COMPACTION_WAIT_S = 60.0

#: Every shape :func:`official_dbs` generates (the names are a contract with the tests).
SHAPES = (
    "mixed",
    "codec_snappy",
    "codec_zlib",
    "codec_lz4",
    "codec_zstd",
    "compacted",
    "block1k",
    "walbig",
)

#: The database official clones are made of, inside the :func:`official_clones` store.
CLONE_PARENT = "dbs/parent"
#: The official clones, by name; each lives at ``dbs/<name>`` next to the parent:
#: ``clone`` (plain), ``clone_w`` (the official writer wrote to it: an L0 of its own and a WAL
#: tail), ``clone_cc`` (a clone of ``clone_w``: two sources), ``clone_proj`` (projected on
#: :data:`CLONE_PROJECTION`, made before the parent's WAL tail, as projections require).
CLONES = ("clone", "clone_w", "clone_cc", "clone_proj")
#: ``clone_proj``'s projection range, ``[start, end)``.
CLONE_PROJECTION = (b"c000300", b"c001200")

# Row kinds (shale.row): VALUE=0, TOMBSTONE=1, MERGE=2 -- the official RowEntryKind values.
_KIND_VALUE, _KIND_TOMBSTONE, _KIND_MERGE = 0, 1, 2

#: A shale row tuple: ``(key, seq, kind, value, expire_ts, create_ts)`` (see ``shale.row``).
RowTuple = tuple[bytes, int, int, bytes, "int | None", "int | None"]


# --------------------------------------------------------------------------------------------
# Public data types (built in the pytest process from the worker's plain dicts)
# --------------------------------------------------------------------------------------------


@dataclass
class ManifestSummary:
    """The latest manifest as the official ``Admin.list_manifests`` reports it.

    SST ids are the 26-character ULID strings; ``l0`` is newest first, ``compacted`` is the list of
    sorted runs in read precedence order, each as ``(run_id, [sst_id, ...])`` in key order.
    """

    id: int
    writer_epoch: int
    compactor_epoch: int
    replay_after_wal_id: int
    next_wal_sst_id: int
    last_l0_seq: int
    last_l0_clock_tick: int
    recent_snapshot_min_seq: int
    l0: list[str]
    compacted: list[tuple[int, list[str]]]
    last_compacted_l0_sst_view_id: str | None
    checkpoints: int
    manifest_ids: list[int]


@dataclass
class OfficialDb:
    """One database written by the official package, plus what the official package reads back.

    ``expected``: ``DbReader.get`` for every key ever written (``None`` = absent).
    ``scan``: a full ``DbReader.scan`` as ``(key, value)`` pairs, key order.
    ``key_values``: ``DbReader.get_key_value`` as ``key -> (seq, create_ts, expire_ts)`` for every
    key that is present.
    ``wal_rows``: for each non-empty WAL file id, the official ``SlateDbWalReader`` rows converted
    to shale row tuples ``(key, seq, kind, value or b"", expire_ts, create_ts)``, in file order.
    ``wal_only_keys``: keys whose last write was left only in the WAL (not flushed to L0).
    """

    name: str
    store_dir: Path
    db_path: str
    root: Path
    codec: str | None
    merge_operator: str | None
    block_size: int
    expected: dict[bytes, bytes | None]
    scan: list[tuple[bytes, bytes]]
    key_values: dict[bytes, tuple[int, int, int | None]]
    wal_rows: dict[int, list[RowTuple]]
    manifest: ManifestSummary
    wal_only_keys: set[bytes] = field(default_factory=set)
    gen_seconds: float = 0.0

    def wal_path(self, wal_id: int) -> Path:
        """Path of ``wal/<wal_id:020>.sst``."""
        return self.root / "wal" / f"{wal_id:020d}.sst"

    def compacted_path(self, sst_id: str) -> Path:
        """Path of ``compacted/<ULID>.sst``."""
        return self.root / "compacted" / f"{sst_id}.sst"

    def wal_files(self) -> list[Path]:
        """Every ``wal/*.sst`` object, fences (zero-length) included, in id order."""
        return sorted((self.root / "wal").glob("*.sst"))

    def compacted_files(self) -> list[Path]:
        """Every ``compacted/*.sst`` object (L0 and sorted-run SSTs), in ULID order."""
        return sorted((self.root / "compacted").glob("*.sst"))

    def manifest_files(self) -> list[Path]:
        """Every ``manifest/*.manifest`` version, in id order."""
        return sorted((self.root / "manifest").glob("*.manifest"))

    def latest_manifest_path(self) -> Path:
        """The newest manifest version (the highest id)."""
        return self.manifest_files()[-1]


@dataclass
class OfficialCloneDb:
    """One database of the :func:`official_clones` store and what the official reader reads.

    ``keys``: every key written to it or to any database it was cloned from; ``expected``,
    ``key_values`` and ``scan`` as in :class:`OfficialDb`.
    """

    name: str
    db_path: str
    keys: list[bytes]
    expected: dict[bytes, bytes | None]
    key_values: dict[bytes, tuple[int, int, int | None]]
    scan: list[tuple[bytes, bytes]]


@dataclass
class OfficialClones:
    """A ``file://`` store holding :data:`CLONE_PARENT` and its official :data:`CLONES`.

    ``dbs`` maps ``"parent"`` and every clone name to an :class:`OfficialCloneDb`.
    """

    store_dir: Path
    dbs: dict[str, OfficialCloneDb]
    gen_seconds: float = 0.0


@dataclass
class OfficialRead:
    """What the official package reads from a database (see :meth:`OfficialReader.read`)."""

    values: dict[bytes, bytes | None]
    key_values: dict[bytes, tuple[int, int, int | None]]
    scan: list[tuple[bytes, bytes]] | None


class OracleError(RuntimeError):
    """The official package failed, crashed or timed out in the worker process."""


# --------------------------------------------------------------------------------------------
# Running the worker
# --------------------------------------------------------------------------------------------


def _run_worker(request: dict[str, Any], timeout: float) -> Any:
    """Run ``request`` in a child process (this file as a script) and return its result.

    :raises OracleError: the worker raised, crashed or exceeded ``timeout`` (it is killed).
    """
    try:
        return run_script(__file__, request, timeout, name="official slatedb worker")
    except WorkerError as exc:
        raise OracleError(str(exc)) from None


class OfficialReader:
    """Read any database directory with the official package, read-only, in a child process.

    The reader is a ``DbReader`` in ``FOLLOW_LATEST`` mode (no checkpoint, nothing written).
    Pass ``merge_operator="concat"`` when the database holds merge operands (the concatenating
    operator the fixtures use); without one the official reader fails on merge rows.
    Failures raise :class:`OracleError`, also reachable as ``OfficialReader.error``.
    """

    error = OracleError

    def read(
        self,
        store_dir: Path | str,
        keys: Iterable[bytes] = (),
        *,
        db_path: str = DB_PATH,
        merge_operator: str | None = None,
        scan: bool = True,
        timeout: float = READ_TIMEOUT_S,
    ) -> OfficialRead:
        """``get``/``get_key_value`` for each of ``keys`` and (if ``scan``) a full scan.

        :param store_dir: directory of the ``file://`` object store (the database lives at
            ``store_dir/db_path``).
        :raises OracleError: the official package failed or timed out.
        """
        value = _run_worker(
            {
                "op": "read",
                "store_dir": str(store_dir),
                "db_path": db_path,
                "keys": list(keys),
                "merge_operator": merge_operator,
                "scan": scan,
                "timeout": timeout,
            },
            timeout + 15.0,
        )
        return OfficialRead(
            values=value["values"], key_values=value["key_values"], scan=value["scan"]
        )

    def scan_ranges(
        self,
        store_dir: Path | str,
        ranges: Iterable[tuple[bytes | None, bool, bytes | None, bool]],
        *,
        db_path: str = DB_PATH,
        timeout: float = READ_TIMEOUT_S,
    ) -> list[list[bytes] | str]:
        """The keys a ``DbReader.scan(KeyRange(start, start_inclusive, end, end_inclusive))``
        returns for each of ``ranges``, in order; ``"error"`` where the official package
        refused the range (it raises for an empty one)."""
        return _run_worker(  # type: ignore[no-any-return]
            {
                "op": "scan_ranges",
                "store_dir": str(store_dir),
                "db_path": db_path,
                "ranges": list(ranges),
                "timeout": timeout,
            },
            timeout + 15.0,
        )

    def put_seqnums(
        self,
        store_dir: Path | str,
        puts: Iterable[tuple[bytes, bytes, int]],
        *,
        db_path: str = DB_PATH,
        timeout: float = READ_TIMEOUT_S,
    ) -> list[int | str]:
        """Open the database with the official package (a writer: it fences shale's), apply
        each ``(key, value, seqnum)`` as ``put_with_options(..., WriteOptions(seqnum=seqnum))``
        and close it (flushing the WAL). Returns each write's seq, or ``"invalid"`` where the
        official package refused the seqnum."""
        return _run_worker(  # type: ignore[no-any-return]
            {
                "op": "put_seqnums",
                "store_dir": str(store_dir),
                "db_path": db_path,
                "puts": list(puts),
                "timeout": timeout,
            },
            timeout + 15.0,
        )

    def wal_rows(
        self, store_dir: Path | str, *, db_path: str = DB_PATH, timeout: float = READ_TIMEOUT_S
    ) -> dict[int, list[RowTuple]]:
        """The official ``SlateDbWalReader`` rows of every non-empty WAL file, by WAL id."""
        return _run_worker(
            {"op": "wal_rows", "store_dir": str(store_dir), "db_path": db_path, "timeout": timeout},
            timeout + 15.0,
        )

    def wal_tail(
        self,
        store_dir: Path | str,
        afters: Iterable[int],
        reads: Iterable[tuple[int, int]],
        *,
        options: dict[str, int] | None = None,
        db_path: str = DB_PATH,
        timeout: float = READ_TIMEOUT_S,
    ) -> dict[str, list[Any]]:
        """The official ``SlateDbWalReader`` (made ``with_options(SlateDbWalReaderOptions(
        **options))`` when given): ``"last"``, ``last_wal_file_id(a)`` for each of ``afters``;
        ``"batches"``, for each ``(start, count)`` of ``reads``, the first ``count`` batches of
        ``iterator(start)`` as ``(last_consumed_wal_file_id, [row tuple, ...])``. An error is
        ``"error: <message>"`` in place of the value (of the whole read, for a batch)."""
        return _run_worker(  # type: ignore[no-any-return]
            {
                "op": "wal_tail",
                "store_dir": str(store_dir),
                "db_path": db_path,
                "afters": list(afters),
                "reads": list(reads),
                "options": options,
                "timeout": timeout,
            },
            timeout + 15.0,
        )

    def clone(
        self,
        store_dir: Path | str,
        source: str,
        path: str,
        projection: tuple[bytes, bytes] | None = None,
        *,
        timeout: float = READ_TIMEOUT_S,
    ) -> None:
        """Make an official clone (``create_clone_builder_from_source``) of ``source`` at
        ``path``, both inside the ``file://`` store at ``store_dir``."""
        request = {
            "op": "clone",
            "store_dir": str(store_dir),
            "source": source,
            "path": path,
            "projection": projection,
        }
        _run_worker(request, timeout + 15.0)

    def manifest(
        self, store_dir: Path | str, *, db_path: str = DB_PATH, timeout: float = READ_TIMEOUT_S
    ) -> ManifestSummary:
        """The latest manifest as the official ``Admin`` decodes it."""
        value = _run_worker(
            {"op": "manifest", "store_dir": str(store_dir), "db_path": db_path, "timeout": timeout},
            timeout + 15.0,
        )
        return ManifestSummary(**value)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


def _require_slatedb() -> None:
    # find_spec only: the native library is loaded by the worker processes, never by pytest
    if importlib.util.find_spec("slatedb") is None:
        pytest.skip("the official slatedb package is not installed")


@pytest.fixture(scope="session")
def official_reader() -> OfficialReader:
    """An :class:`OfficialReader`: read any database directory with the official package."""
    _require_slatedb()
    return OfficialReader()


@pytest.fixture(scope="session")
def official_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OfficialDb]:
    """Every shape in :data:`SHAPES`, generated once per session by the official package."""
    _require_slatedb()
    base = tmp_path_factory.mktemp("official_dbs")
    started = time.monotonic()
    value = _run_worker(
        {"op": "generate", "base": str(base), "shapes": list(SHAPES)}, GENERATE_TIMEOUT_S
    )
    logger.info("generated %d official databases in %.1fs", len(value), time.monotonic() - started)
    dbs: dict[str, OfficialDb] = {}
    for name, d in value.items():
        d = dict(d)
        d["store_dir"] = Path(d["store_dir"])
        d["root"] = Path(d["root"])
        d["manifest"] = ManifestSummary(**d["manifest"])
        dbs[name] = OfficialDb(**d)
    return dbs


@pytest.fixture(scope="session")
def official_clones(tmp_path_factory: pytest.TempPathFactory) -> OfficialClones:
    """A parent with a sorted run, L0s and a WAL tail, and its :data:`CLONES`, made once per
    session by the official package in one ``file://`` store (paths ``dbs/<name>``)."""
    _require_slatedb()
    store_dir = tmp_path_factory.mktemp("official_clones")
    value = _run_worker({"op": "generate_clones", "store_dir": str(store_dir)}, GENERATE_TIMEOUT_S)
    dbs = {name: OfficialCloneDb(name=name, **d) for name, d in value["dbs"].items()}
    return OfficialClones(store_dir=store_dir, dbs=dbs, gen_seconds=value["gen_seconds"])


# --------------------------------------------------------------------------------------------
# Worker side (runs only in the child process; imports the official package lazily)
# --------------------------------------------------------------------------------------------


def _worker_main(argv: list[str]) -> int:
    return worker_main(argv, _dispatch, overall_timeout=False)  # each op bounds itself


async def _dispatch(request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "generate":
        return await _generate_all(Path(request["base"]), request["shapes"])
    if op == "generate_clones":
        return await _generate_clones(Path(request["store_dir"]))
    if op == "read":
        return await asyncio.wait_for(
            _read_db(
                Path(request["store_dir"]),
                request["db_path"],
                request["keys"],
                merge_operator=request["merge_operator"],
                with_scan=request["scan"],
            ),
            request["timeout"],
        )
    if op == "scan_ranges":
        return await asyncio.wait_for(
            _scan_ranges(Path(request["store_dir"]), request["db_path"], request["ranges"]),
            request["timeout"],
        )
    if op == "put_seqnums":
        return await asyncio.wait_for(
            _put_seqnums(Path(request["store_dir"]), request["db_path"], request["puts"]),
            request["timeout"],
        )
    if op == "wal_rows":
        s = _slatedb()
        store_dir = Path(request["store_dir"])
        store = _store(s, store_dir)
        return await asyncio.wait_for(
            _read_wal_rows(s, store, store_dir, request["db_path"]), request["timeout"]
        )
    if op == "wal_tail":
        s = _slatedb()
        store = _store(s, Path(request["store_dir"]))
        return await asyncio.wait_for(_wal_tail(s, store, request), request["timeout"])
    if op == "manifest":
        s = _slatedb()
        store = _store(s, Path(request["store_dir"]))
        return await asyncio.wait_for(
            _manifest_summary(s, store, request["db_path"]), request["timeout"]
        )
    if op == "clone":  # an official clone of any database (CloneBuilder, no checkpoint given)
        s = _slatedb()
        store = _store(s, Path(request["store_dir"]))
        proj = request["projection"]
        rng = None
        if proj is not None:
            rng = s.KeyRange(start=proj[0], start_inclusive=True, end=proj[1], end_inclusive=False)
        await _clone(s, store, request["source"], request["path"], rng)
        return None
    raise ValueError(f"unknown op {op!r}")


def _slatedb() -> Any:
    import slatedb.uniffi as s

    return s


def _store(s: Any, store_dir: Path) -> Any:
    return s.ObjectStoreBuilder.from_url("file://" + str(store_dir.resolve())).build()


def _concat_operator(s: Any) -> Any:
    class Concat(s.MergeOperator):  # type: ignore[misc,name-defined]
        """The fixtures' merge operator: concatenation, ``existing or b""`` then the operand."""

        def merge(self, key: bytes, existing_value: bytes | None, operand: bytes) -> bytes:
            return (existing_value or b"") + operand

    return Concat()


def _row_tuple(entry: Any) -> RowTuple:
    kinds = {"VALUE": _KIND_VALUE, "TOMBSTONE": _KIND_TOMBSTONE, "MERGE": _KIND_MERGE}
    kind = kinds[entry.kind.name]
    return (
        bytes(entry.key),
        int(entry.seq),
        kind,
        bytes(entry.value) if entry.value is not None else b"",
        entry.expire_ts,
        entry.create_ts,
    )


def _listing(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }


async def _read_wal_rows(
    s: Any, store: Any, store_dir: Path, db_path: str
) -> dict[int, list[RowTuple]]:
    """Rows of every non-empty WAL file, read with the official live WAL reader."""
    reader = s.SlateDbWalReader(db_path, store)
    last = await reader.last_wal_file_id(0)
    out: dict[int, list[RowTuple]] = {}
    if last == 0:
        return out
    # Start at the oldest WAL object still present (a GC may have deleted the first ones).
    present = [int(p.stem) for p in (store_dir / db_path / "wal").glob("*.sst") if p.stem.isdigit()]
    it = await reader.iterator(min(present, default=1))
    consumed = 0
    while consumed < last:
        # At the tail the iterator waits for new files instead of ending: stop at ``last``.
        batch = await asyncio.wait_for(it.next(), 30.0)
        if batch is None:
            break
        consumed = int(batch.last_consumed_wal_file_id)
        if batch.rows:
            out[consumed] = [_row_tuple(r) for r in batch.rows]
    return out


async def _wal_tail(s: Any, store: Any, request: dict[str, Any]) -> dict[str, list[Any]]:
    """``last_wal_file_id`` and the first batches of iterators (see ``OfficialReader.wal_tail``)."""
    db_path, options = request["db_path"], request["options"]
    if options is None:
        reader = s.SlateDbWalReader(db_path, store)
    else:
        reader = s.SlateDbWalReader.with_options(
            db_path, store, s.SlateDbWalReaderOptions(**options)
        )
    last: list[Any] = []
    for after in request["afters"]:
        try:
            last.append(int(await reader.last_wal_file_id(after)))
        except s.Error as exc:
            last.append(f"error: {exc}")
    batches: list[Any] = []
    for start, count in request["reads"]:
        it = await reader.iterator(start)
        got: list[Any] = []
        try:
            for _ in range(count):  # live: at the tail next() waits, so read only ``count``
                b = await asyncio.wait_for(it.next(), 30.0)
                got.append((int(b.last_consumed_wal_file_id), [_row_tuple(r) for r in b.rows]))
        except s.Error as exc:
            got = f"error: {exc}"  # type: ignore[assignment]
        batches.append(got)
    return {"last": last, "batches": batches}


async def _manifest_summary(s: Any, store: Any, db_path: str) -> dict[str, Any]:
    admin = s.AdminBuilder(db_path, store).build()
    manifests = await admin.list_manifests(None, None)
    if not manifests:
        raise RuntimeError(f"no manifest under {db_path!r}")
    m = max(manifests, key=lambda v: v.id)
    return {
        "id": int(m.id),
        "writer_epoch": int(m.writer_epoch),
        "compactor_epoch": int(m.compactor_epoch),
        "replay_after_wal_id": int(m.replay_after_wal_id),
        "next_wal_sst_id": int(m.next_wal_sst_id),
        "last_l0_seq": int(m.last_l0_seq),
        "last_l0_clock_tick": int(m.last_l0_clock_tick),
        "recent_snapshot_min_seq": int(m.recent_snapshot_min_seq),
        "l0": [v.sst.id.value for v in m.l0],
        "compacted": [(int(r.id), [v.sst.id.value for v in r.sst_views]) for r in m.compacted],
        "last_compacted_l0_sst_view_id": m.last_compacted_l0_sst_view_id,
        "checkpoints": len(m.checkpoints),
        "manifest_ids": sorted(int(v.id) for v in manifests),
    }


async def _scan_ranges(
    store_dir: Path, db_path: str, ranges: list[tuple[bytes | None, bool, bytes | None, bool]]
) -> list[list[bytes] | str]:
    s = _slatedb()
    builder = s.DbReaderBuilder(db_path, _store(s, store_dir))
    builder.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
    reader = await builder.build()
    out: list[list[bytes] | str] = []
    try:
        for start, start_inclusive, end, end_inclusive in ranges:
            rng = s.KeyRange(
                start=start, start_inclusive=start_inclusive, end=end, end_inclusive=end_inclusive
            )
            try:
                it = await reader.scan(rng)
            except s.Error:
                out.append("error")
                continue
            keys: list[bytes] = []
            while batch := await it.next_batch(1024):
                keys.extend(bytes(kv.key) for kv in batch)
            out.append(keys)
    finally:
        await reader.shutdown()
    return out


async def _read_db(
    store_dir: Path,
    db_path: str,
    keys: Iterable[bytes],
    *,
    merge_operator: str | None,
    with_scan: bool,
) -> dict[str, Any]:
    """Open a FOLLOW_LATEST DbReader, read ``keys`` and (optionally) scan; always shut down."""
    s = _slatedb()
    store = _store(s, store_dir)
    builder = s.DbReaderBuilder(db_path, store)
    builder.with_reader_mode(s.ReaderMode.FOLLOW_LATEST())
    if merge_operator == "concat":
        builder.with_merge_operator(_concat_operator(s))
    elif merge_operator is not None:
        raise ValueError(f"unknown merge operator {merge_operator!r}")
    reader = await builder.build()
    try:
        values: dict[bytes, bytes | None] = {}
        key_values: dict[bytes, tuple[int, int, int | None]] = {}

        async def one(key: bytes) -> None:
            got = await reader.get(key)
            values[key] = None if got is None else bytes(got)
            kv = await reader.get_key_value(key)
            if (None if kv is None else bytes(kv.value)) != values[key]:
                raise RuntimeError(f"get and get_key_value disagree for {key!r}")
            if kv is not None:
                key_values[key] = (int(kv.seq), int(kv.create_ts), kv.expire_ts)

        todo = [bytes(k) for k in keys]
        for start in range(0, len(todo), 64):  # a few dozen reads in flight at a time
            await asyncio.gather(*(one(k) for k in todo[start : start + 64]))
        values = {k: values[k] for k in todo}  # caller's order
        scan: list[tuple[bytes, bytes]] | None = None
        if with_scan:
            scan = []
            it = await reader.scan(
                s.KeyRange(start=None, start_inclusive=True, end=None, end_inclusive=False)
            )
            while True:
                batch = await it.next_batch(1024)
                if not batch:
                    break
                scan.extend((bytes(kv.key), bytes(kv.value)) for kv in batch)
        return {"values": values, "key_values": key_values, "scan": scan}
    finally:
        await asyncio.wait_for(reader.shutdown(), 30.0)


# ---- generation ------------------------------------------------------------------------------


@dataclass
class _Spec:
    name: str
    codec: str | None = None  # Settings.compression_codec: "Snappy", "Zlib", "Lz4", "Zstd"
    merge: bool = True
    block_size: int = 4096
    compactor: bool = False
    settings: dict[str, str] = field(default_factory=dict)


_SPECS = {
    "mixed": _Spec("mixed"),
    "codec_snappy": _Spec("codec_snappy", codec="Snappy"),
    "codec_zlib": _Spec("codec_zlib", codec="Zlib"),
    "codec_lz4": _Spec("codec_lz4", codec="Lz4"),
    "codec_zstd": _Spec("codec_zstd", codec="Zstd"),
    "compacted": _Spec(
        "compacted",
        compactor=True,
        settings={
            "compactor_options.poll_interval": '"50ms"',
            "compactor_options.commit_compacted_interval": '"50ms"',
            "compactor_options.worker.compactions_poll_interval": '"50ms"',
            "compactor_options.worker.max_sst_size": "32768",
            "compactor_options.worker.max_subcompactions": "1",
            "manifest_poll_interval": '"100ms"',
        },
    ),
    "block1k": _Spec("block1k", block_size=1024),
    # WAL files only on explicit flushes, so each holds ~200 KB (several 64 KiB blocks).
    "walbig": _Spec("walbig", merge=False, settings={"flush_interval": '"60s"'}),
}

_BLOCK_SIZES = {1024: "BLOCK1_KIB", 2048: "BLOCK2_KIB", 4096: "BLOCK4_KIB", 8192: "BLOCK8_KIB"}


class _Writer:
    """A writable official Db plus the set of keys ever written to it."""

    def __init__(self, s: Any, db: Any) -> None:
        self.s = s
        self.db = db
        self.keys: set[bytes] = set()
        # keys whose latest write went only to the WAL (filled by the final phase)
        self.wal_only: set[bytes] = set()

    async def put(self, key: bytes, value: bytes, ttl: Any = None) -> None:
        self.keys.add(key)
        if ttl is None:
            await self.db.put(key, value)
        else:
            await self.db.put_with_options(
                key, value, self.s.PutOptions(ttl=ttl), self.s.WriteOptions()
            )

    async def delete(self, key: bytes) -> None:
        self.keys.add(key)
        await self.db.delete(key)

    async def merge(self, key: bytes, operand: bytes, ttl: Any = None) -> None:
        self.keys.add(key)
        if ttl is None:
            await self.db.merge(key, operand)
        else:
            await self.db.merge_with_options(
                key, operand, self.s.MergeOptions(ttl=ttl), self.s.WriteOptions()
            )

    async def batch(self, ops: list[tuple[str, bytes, bytes]]) -> None:
        """One atomic WriteBatch: every row shares one seq."""
        wb = self.s.WriteBatch()
        for op, key, value in ops:
            self.keys.add(key)
            if op == "put":
                wb.put(key, value)
            elif op == "merge":
                wb.merge(key, value)
            else:
                wb.delete(key)
        await self.db.write(wb)

    async def flush_memtable(self) -> None:
        await self.db.flush_with_options(self.s.FlushOptions(flush_type=self.s.FlushType.MEM_TABLE))

    async def flush_wal(self) -> None:
        await self.db.flush_with_options(self.s.FlushOptions(flush_type=self.s.FlushType.WAL))


async def _generate_all(base: Path, shapes: list[str]) -> dict[str, dict[str, Any]]:
    # Generate concurrently: most of the wall time is waiting (WAL flush ticks, compaction polls).
    results = await asyncio.gather(*(_generate(base / name, _SPECS[name]) for name in shapes))
    return dict(zip(shapes, results, strict=True))


async def _generate(store_dir: Path, spec: _Spec) -> dict[str, Any]:
    s = _slatedb()
    started = time.monotonic()
    store_dir.mkdir(parents=True, exist_ok=True)
    store = _store(s, store_dir)
    settings = s.Settings.default()
    # No GC: every object stays put for the golden tests.
    settings.set("garbage_collector_options", "null")
    if not spec.compactor:
        # No embedded compactor: the L0s stay exactly as flushed.
        settings.set("compactor_options", "null")
    if spec.codec is not None:
        settings.set("compression_codec", f'"{spec.codec}"')
    for key, value in spec.settings.items():
        settings.set(key, value)
    builder = s.DbBuilder(DB_PATH, store)
    builder.with_settings(settings)
    if spec.merge:
        builder.with_merge_operator(_concat_operator(s))
    builder.with_sst_block_size(getattr(s.SstBlockSize, _BLOCK_SIZES[spec.block_size]))
    db = await asyncio.wait_for(builder.build(), 30.0)
    w = _Writer(s, db)
    try:
        if spec.name == "mixed":
            await _shape_mixed(w, big=True)
        elif spec.name.startswith("codec_"):
            await _shape_mixed(w, big=False)
        elif spec.name == "compacted":
            await _shape_compacted(w, store)
        elif spec.name == "block1k":
            await _shape_block1k(w)
        elif spec.name == "walbig":
            await _shape_walbig(w)
        else:
            raise ValueError(spec.name)
    finally:
        # WAL-only flush on close: whatever is still in the memtable stays in the WAL.
        await asyncio.wait_for(
            db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL)), 30.0
        )
    root = store_dir / DB_PATH
    before = _listing(root)
    manifest = await _manifest_summary(s, store, DB_PATH)
    wal_rows = await _read_wal_rows(s, store, store_dir, DB_PATH)
    keys = sorted(w.keys)
    read = await _read_db(
        store_dir, DB_PATH, keys, merge_operator="concat" if spec.merge else None, with_scan=True
    )
    after = _listing(root)
    if before != after:
        raise RuntimeError(f"{spec.name}: reading changed the database: {before} -> {after}")
    return {
        "name": spec.name,
        "store_dir": str(store_dir),
        "db_path": DB_PATH,
        "root": str(root),
        "codec": None if spec.codec is None else spec.codec.lower(),
        "merge_operator": "concat" if spec.merge else None,
        "block_size": spec.block_size,
        "expected": read["values"],
        "scan": read["scan"],
        "key_values": read["key_values"],
        "wal_rows": wal_rows,
        "manifest": manifest,
        "wal_only_keys": set(w.wal_only),
        "gen_seconds": time.monotonic() - started,
    }


def _prefixed(i: int, width: int = 200) -> bytes:
    """A key with a ``width``-byte shared prefix (exercises long V2 prefix compression)."""
    return b"P" * width + b"%05d" % i


async def _shape_mixed(w: _Writer, *, big: bool) -> None:
    """Puts, overwrites, deletes, merges, TTL, binary keys, empty and 10 KB values, several L0s
    and a WAL tail."""
    s = w.s
    expired = s.Ttl.EXPIRE_AT_MILLIS(EXPIRED_AT_MS)
    live = s.Ttl.EXPIRE_AFTER_MILLIS(LONG_TTL_MS)
    n = 1200 if big else 1050

    # A 1 ms TTL row followed by later writes: the flush's clock (the memtable's last tick) is
    # past its expiry, so the L0 stores a tombstone for it.
    await w.put(b"ttl:short-mid", b"short", s.Ttl.EXPIRE_AFTER_MILLIS(1))
    await asyncio.sleep(0.005)
    # L0 #1: > 1000 distinct keys (so it carries a bloom filter), in write batches of 50, plus
    # 200-byte shared prefixes.
    for start in range(0, n, 50):
        ops = [
            ("put", b"k%05d" % i, b"v%d-" % i + b"x" * (i % 40)) for i in range(start, start + 50)
        ]
        await w.batch(ops)
    for i in range(60 if big else 20):
        await w.put(_prefixed(i), b"prefixed-%d" % i)
    await w.merge(b"m:base", b"base")
    await w.put(b"ttl:live-l0", b"lives", live)
    await w.put(b"ttl:dead-l0", b"dies", expired)
    # The last write before the flush: its 1 ms TTL is not yet over at the flush's clock, so the
    # L0 keeps it as a value with an expire_ts that is soon in the past (reads still return it).
    await w.put(b"ttl:short-last", b"short", s.Ttl.EXPIRE_AFTER_MILLIS(1))
    await w.flush_memtable()

    # L0 #2: overwrites, deletes, merges over an L0 base, binary keys, empty and 10 KB values.
    for i in range(0, n, 7):
        await w.put(b"k%05d" % i, b"over-%d" % i)
    for i in range(3, n, 11):
        await w.delete(b"k%05d" % i)
    await w.merge(b"m:base", b"+op1")
    await w.merge(b"m:nobase", b"a")
    await w.merge(b"m:nobase", b"b")
    await w.put(b"m:deleted", b"gone")
    await w.delete(b"m:deleted")
    await w.merge(b"m:deleted", b"fresh")
    await w.put(b"m:expired-base", b"old", expired)
    await w.merge(b"m:expired-base", b"new")
    binary_keys = (
        b"\x00",
        b"\x00\x00\x01",
        b"\xff",
        b"\xff\xff\xfe",
        b"a\x00b",
        b"a\xffb",
        b"\x00\xff",
    )
    for key in binary_keys:
        await w.put(key, b"bin:" + key)
    await w.put(b"empty", b"")
    await w.put(b"big:1", bytes(range(256)) * 40)  # 10 KB, a block of its own
    if big:
        await w.put(b"big:2", b"Z" * 10_240)
        for i in range(0, 60, 3):
            await w.put(_prefixed(i), b"prefixed-over-%d" % i)
    await w.flush_memtable()

    # L0 #3 (only in the big shape): more history on the same keys.
    if big:
        await w.merge(b"m:base", b"+op2")
        await w.merge(b"m:nobase", b"c")
        await w.delete(b"big:2")
        await w.put(b"empty", b"now-full")
        await w.put(b"ttl:live-l0", b"lives-again", live)
        for i in range(1, n, 13):
            await w.put(b"k%05d" % i, b"third-%d" % i)
        await w.flush_memtable()

    # WAL tail: written and flushed to the WAL only (never to an L0).
    tail: list[bytes] = []

    async def tail_put(key: bytes, value: bytes, ttl: Any = None) -> None:
        await w.put(key, value, ttl)
        tail.append(key)

    await tail_put(b"wal:1", b"only-in-wal")
    await tail_put(b"k00000", b"wal-overwrite")
    await tail_put(b"ttl:live-wal", b"wal-lives", live)
    await tail_put(b"ttl:dead-wal", b"wal-dies", expired)
    await w.delete(b"k00002")
    tail.append(b"k00002")
    await w.merge(b"m:base", b"+walop")
    await w.merge(b"m:wal-only", b"w1")
    await w.merge(b"m:wal-only", b"dead", expired)
    await w.merge(b"m:wal-only", b"w2")
    tail.extend([b"m:base", b"m:wal-only"])
    await w.batch(
        [("put", b"wal:batch-%d" % i, b"b%d" % i) for i in range(20)] + [("delete", b"k00004", b"")]
    )
    tail.extend([b"wal:batch-%d" % i for i in range(20)] + [b"k00004"])
    await tail_put(b"\x00wal", b"")
    await w.flush_wal()
    w.wal_only.update(tail)


async def _shape_compacted(w: _Writer, store: Any, db_path: str = DB_PATH) -> None:
    """Five L0 flushes of overlapping keys, then wait for the embedded compactor's sorted run."""
    s = w.s
    for round_ in range(5):
        ops = [
            ("put", b"c%06d" % i, b"r%d-%d" % (round_, i))
            for i in range(round_ * 400, round_ * 400 + 1500)
        ]
        for start in range(0, len(ops), 250):
            await w.batch(ops[start : start + 250])
        await w.merge(b"m:counter", b"%d" % round_)
        await w.delete(b"c%06d" % (round_ * 7))
        await w.flush_memtable()
    admin = s.AdminBuilder(db_path, store).build()
    deadline = time.monotonic() + COMPACTION_WAIT_S
    while True:
        manifests = await admin.list_manifests(None, None)
        latest = max(manifests, key=lambda v: v.id)
        if latest.compacted:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the embedded compactor produced no sorted run")
        await asyncio.sleep(0.05)
    # A little history above the run: one more L0 and a WAL tail.
    for i in range(0, 1500, 5):
        await w.put(b"c%06d" % i, b"post-%d" % i)
    await w.merge(b"m:counter", b"+l0")
    await w.flush_memtable()
    await w.put(b"c000001", b"wal-tail")
    await w.merge(b"m:counter", b"+wal")
    await w.flush_wal()
    w.wal_only.update({b"c000001", b"m:counter"})


async def _shape_block1k(w: _Writer) -> None:
    """1 KiB blocks: one L0 with > 1000 rows and mixed value sizes, one small L0."""
    for start in range(0, 1100, 100):
        await w.batch([("put", b"b%05d" % i, b"v" * (i % 300)) for i in range(start, start + 100)])
    await w.put(b"b-big", b"B" * 3000)  # larger than a block
    await w.merge(b"b-merge", b"x")
    await w.flush_memtable()
    for i in range(0, 1100, 9):
        await w.delete(b"b%05d" % i)
    await w.merge(b"b-merge", b"y")
    await w.flush_memtable()


async def _shape_walbig(w: _Writer) -> None:
    """Large WAL files (several 65535-byte blocks each), all left in the WAL."""
    n = 0
    for file_no in range(4):
        for _ in range(3):
            ops = [("put", b"w%07d" % (n + j), (b"%d:" % (n + j)) * 30) for j in range(400)]
            n += 400
            await w.batch(ops)
        await w.put(b"w-single-%d" % file_no, b"s" * 70_000)  # a single oversize row
        await w.delete(b"w%07d" % (file_no * 11))
        await w.flush_wal()
    w.wal_only.update(w.keys)


# ---- official clones ---------------------------------------------------------------------------


async def _put_seqnums(
    store_dir: Path, db_path: str, puts: list[tuple[bytes, bytes, int]]
) -> list[int | str]:
    s = _slatedb()
    settings = s.Settings.default()
    settings.set("garbage_collector_options", "null")
    settings.set("compactor_options", "null")
    builder = s.DbBuilder(db_path, _store(s, store_dir))
    builder.with_settings(settings)
    db = await asyncio.wait_for(builder.build(), 30.0)
    out: list[int | str] = []
    try:
        for key, value, seqnum in puts:
            try:
                handle = await db.put_with_options(
                    key, value, s.PutOptions(ttl=s.Ttl.DEFAULT()), s.WriteOptions(seqnum=seqnum)
                )
            except s.Error.Invalid:
                out.append("invalid")
            else:
                out.append(int(handle.seqnum()))
    finally:
        await db.shutdown_with_options(s.CloseOptions(flush_type=s.FlushType.WAL))
    return out


async def _clone(s: Any, store: Any, source: str, path: str, projection: Any = None) -> None:
    """``Admin.create_clone_builder_from_source``: no checkpoint given (a short-lived one)."""
    admin = s.AdminBuilder(source, store).build()
    builder = admin.create_clone_builder_from_source(
        s.CloneSourceSpec(path=source, checkpoint=None, projection_range=projection)
    )
    builder.with_clone_path(path)
    await asyncio.wait_for(builder.build(), 30.0)


async def _generate_clones(store_dir: Path) -> dict[str, Any]:
    s = _slatedb()
    started = time.monotonic()
    store_dir.mkdir(parents=True, exist_ok=True)
    store = _store(s, store_dir)

    async def writer(path: str, *, compactor: bool) -> _Writer:
        settings = s.Settings.default()
        settings.set("garbage_collector_options", "null")
        if compactor:
            for key, value in _SPECS["compacted"].settings.items():
                settings.set(key, value)
        else:
            settings.set("compactor_options", "null")
        builder = s.DbBuilder(path, store)
        builder.with_settings(settings)
        builder.with_merge_operator(_concat_operator(s))
        return _Writer(s, await asyncio.wait_for(builder.build(), 30.0))

    async def close(w: _Writer, flush: Any) -> None:
        await asyncio.wait_for(w.db.shutdown_with_options(s.CloseOptions(flush_type=flush)), 30.0)

    # 1. The parent: a multi-SST sorted run and L0s; closing flushes everything to L0.
    w = await writer(CLONE_PARENT, compactor=True)
    try:
        await _shape_compacted(w, store, CLONE_PARENT)
    finally:
        await close(w, s.FlushType.MEM_TABLE)
    parent_keys = set(w.keys)
    # 2. The projected clone, while the parent has no data left in its WAL.
    start, end = CLONE_PROJECTION
    projection = s.KeyRange(start=start, start_inclusive=True, end=end, end_inclusive=False)
    await _clone(s, store, CLONE_PARENT, "dbs/clone_proj", projection)
    # 3. A WAL tail in the parent (copied into the clones made now).
    w = await writer(CLONE_PARENT, compactor=False)
    try:
        for i in range(0, 1500, 17):
            await w.put(b"c%06d" % i, b"parent-wal-%d" % i)
        await w.delete(b"c000340")
        await w.merge(b"m:counter", b"+pwal")
        await w.flush_wal()
    finally:
        await close(w, s.FlushType.WAL)
    parent_keys |= w.keys
    await _clone(s, store, CLONE_PARENT, "dbs/clone")
    await _clone(s, store, CLONE_PARENT, "dbs/clone_w")
    # 4. The official writer on clone_w: overwrites, deletes, merges, an L0, a WAL tail.
    w = await writer("dbs/clone_w", compactor=False)
    try:
        for i in range(0, 1800, 3):
            await w.put(b"c%06d" % i, b"clone-%d" % i)
        for i in range(5, 1500, 50):
            await w.delete(b"c%06d" % i)
        await w.merge(b"m:counter", b"+clone")
        await w.merge(b"m:clone-only", b"x")
        await w.flush_memtable()
        await w.put(b"c000002", b"clone-wal")
        await w.merge(b"m:counter", b"+cwal")
        await w.flush_wal()
    finally:
        await close(w, s.FlushType.WAL)
    clone_w_keys = parent_keys | w.keys
    # 5. A clone of the clone: its SSTs come from two sources.
    await _clone(s, store, "dbs/clone_w", "dbs/clone_cc")

    keys = {
        "parent": parent_keys,
        "clone": parent_keys,
        "clone_w": clone_w_keys,
        "clone_cc": clone_w_keys,
        "clone_proj": parent_keys,
    }
    dbs: dict[str, Any] = {}
    for name, ks in keys.items():
        path = CLONE_PARENT if name == "parent" else f"dbs/{name}"
        before = _listing(store_dir)
        read = await _read_db(store_dir, path, sorted(ks), merge_operator="concat", with_scan=True)
        if _listing(store_dir) != before:
            raise RuntimeError(f"{name}: reading changed the store")
        dbs[name] = {
            "db_path": path,
            "keys": sorted(ks),
            "expected": read["values"],
            "key_values": read["key_values"],
            "scan": read["scan"],
        }
    return {"dbs": dbs, "gen_seconds": time.monotonic() - started}


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv))
