"""``shale demo``: a guided tour of the engine on a local directory, printed step by step.

It creates a database, writes a few thousand keys (puts, overwrites, deletes, ``concat`` merges,
a TTL), reads and scans them, takes a snapshot and a checkpoint, flushes the memtable to L0,
writes more keys that stay in the WAL, closes, reopens (replaying the WAL) and checks that every
key reads back as a Python dict kept alongside says it should. It then runs a full compaction
with a standalone ``shale_compactor.Compactor`` and one GC round (``min_age=0``) with
``shale_gc.GarbageCollector``, next to the open writer (both are dependencies of the ``shale``
distribution; should one be missing anyway, the demo says the step was skipped).

Invariant: the demo checks itself. Any difference between the database and the model raises
:class:`~shale.errors.InternalError` (the ``shale`` command then exits with 2), so the demo
doubles as an end-to-end smoke test.
"""

from __future__ import annotations

import importlib
import pathlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, TextIO

from shale.errors import InternalError, InvalidError

__all__ = ["run_demo"]

#: Keys per write batch in the bulk-load step.
BATCH = 500
#: Keys written after the L0 flush, which stay in the WAL until the reopen replays them.
LATE_KEYS = 300
#: Keys that receive merge operands, and operands per key.
MERGE_KEYS, MERGE_ROUNDS = 20, 10


def _user(i: int) -> bytes:
    return b"user:%05d" % i


def _files(store: Any) -> dict[str, tuple[int, int]]:
    """``{directory: (objects, bytes)}`` of everything in the store."""
    out: dict[str, tuple[int, int]] = {}
    for meta in store.list(""):
        top = meta.key.split("/", 1)[0] if "/" in meta.key else "."
        n, size = out.get(top, (0, 0))
        out[top] = (n + 1, size + meta.size)
    return dict(sorted(out.items()))


def _files_line(store: Any) -> str:
    parts = [f"{d}/ {n} ({size:,} B)" for d, (n, size) in _files(store).items()]
    return ", ".join(parts) or "(empty)"


def _find(module: str, name: str) -> tuple[Any, str]:
    """``(class, "")`` when ``module.name`` exists, else ``(None, why)``."""
    package = module.replace("_", "-")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None, f"{package} is not installed"
    cls = getattr(mod, name, None)
    if cls is None:
        return None, f"{package} is installed but not implemented yet (no {module}.{name})"
    return cls, ""


class _Demo:
    def __init__(self, root: pathlib.Path, keys: int, out: TextIO) -> None:
        from shale.settings import Settings

        self.root = root
        self.url = str(root)
        self.keys = keys
        self.out = out
        self.model: dict[bytes, bytes] = {}
        self.step_no = 0
        self.settings = Settings(
            merge_operator="concat", compactor_options=None, garbage_collector_options=None
        )

    # -- printing ---------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say()
        self.say(f"{self.step_no}. {title}")

    def show(self, text: str) -> None:
        self.say(f"   {text}")

    # -- checks -----------------------------------------------------------------------------

    def check(self, what: str, got: object, want: object) -> None:
        if got != want:
            raise InternalError("demo check failed", check=what, got=got, want=want)

    def verify(self, db: Any, where: str) -> None:
        """Every key equals the model: a full scan, a reverse scan and point reads."""
        rows = list(db.scan())
        self.check(f"full scan {where}", rows, sorted(self.model.items()))
        back = [k for k, _ in db.scan(reverse=True)]
        self.check(f"reverse scan {where}", back, sorted(self.model, reverse=True))
        for key in (_user(0), _user(7), _user(10), b"log:03", b"late:00001", b"missing"):
            self.check(f"get {key!r} {where}", db.get(key), self.model.get(key))
        self.show(
            f"verified {len(rows):,} live keys {where}: full scan, reverse scan and "
            "point reads match the model"
        )

    # -- the tour ---------------------------------------------------------------------------

    def run(self) -> None:
        from shale.batch import WriteBatch
        from shale.db import Db

        self.say(f"shale demo: a database in {self.url}")
        self.say("settings: merge_operator='concat'; the Db runs no compactor or GC itself")

        self.step(
            "Open (creates the database: manifest/, and an empty WAL object that fences "
            "older writers)"
        )
        db = Db.open(self.url, self.settings)
        m = db.manifest()
        self.show(
            f"manifest {db.metrics()['manifest_id']}, writer_epoch={m.writer_epoch}, "
            f"last_seq={db.metrics()['last_seq']}"
        )
        self.show(f"files: {_files_line(db.store)}")

        n = self.keys
        self.step(
            f"Write {n:,} keys user:00000..user:{max(n - 1, 0):05d} in batches of {BATCH} "
            "(durable: each write returns once its WAL SST is stored)"
        )
        t0 = time.perf_counter()
        first_seq = last_seq = 0
        for lo in range(0, n, BATCH):
            batch = WriteBatch()
            for i in range(lo, min(n, lo + BATCH)):
                batch.put(_user(i), b"name-%d|v1" % i)
                self.model[_user(i)] = b"name-%d|v1" % i
            h = db.write(batch)
            first_seq = first_seq or h.seq
            last_seq = h.seq
        dt = time.perf_counter() - t0
        self.show(
            f"{n:,} rows in seqs {first_seq}..{last_seq} (one seq per batch), "
            f"{dt:.2f} s, {n / max(dt, 1e-9):,.0f} rows/s"
        )

        self.step("Overwrite every 10th key and delete every 7th (one batch each)")
        over, dels = WriteBatch(), WriteBatch()
        for i in range(0, n, 10):
            over.put(_user(i), b"name-%d|v2" % i)
            self.model[_user(i)] = b"name-%d|v2" % i
        for i in range(0, n, 7):
            dels.delete(_user(i))
            self.model.pop(_user(i), None)
        h1 = db.write(over) if len(over) else None
        h2 = db.write(dels) if len(dels) else None
        self.show(
            f"{len(over)} overwrites (seq {h1.seq if h1 else '-'}), {len(dels)} deletes "
            f"(seq {h2.seq if h2 else '-'}): a delete writes a tombstone"
        )

        self.step(
            f"Merge: {MERGE_ROUNDS} 'concat' operands on each of {MERGE_KEYS} keys "
            "log:00..log:19 (not durable one by one, then one flush)"
        )
        for r in range(MERGE_ROUNDS):
            for k in range(MERGE_KEYS):
                key = b"log:%02d" % k
                db.merge(key, b"e%d;" % r, durable=False)
                self.model[key] = self.model.get(key, b"") + b"e%d;" % r
        db.flush()
        self.show(
            f"{MERGE_ROUNDS * MERGE_KEYS} operands; reads fold them: "
            f"get(log:03) = {db.get(b'log:03')!r}"
        )

        self.step("TTL: put session:temp with ttl=200 ms")
        db.put(b"session:temp", b"expires soon", ttl=200)
        self.show(f"now:        get = {db.get(b'session:temp')!r}")
        time.sleep(0.25)
        self.show(
            f"after 250ms: get = {db.get(b'session:temp')!r}, with include_expired=True "
            f"= {db.get(b'session:temp', include_expired=True)!r}"
        )

        self.step("Read back")
        for key in (_user(1), _user(10), _user(14), _user(70), b"log:03"):
            value = db.get(key)
            self.check(f"get {key!r}", value, self.model.get(key))
            self.show(f"get {key.decode():<12} -> {value!r}")
        kv = db.get_key_value(_user(1))
        if kv is None:  # fewer than 2 keys written
            self.show("get_key_value(user:00001): absent")
        else:
            self.show(
                f"get_key_value(user:00001): seq={kv.seq} create_ts={kv.create_ts} "
                f"expire_ts={kv.expire_ts}"
            )

        self.step("Scan")
        rows = list(db.scan(_user(100), _user(120)))
        self.show(
            f"scan [user:00100, user:00120): {len(rows)} rows, first "
            f"{', '.join(k.decode() for k, _ in rows[:4])}, ..."
        )
        top = [k.decode() for k, _ in _take(db.scan(b"user:", b"user;", reverse=True), 3)]
        self.show(f"reverse scan of user:*, first 3: {', '.join(top)}")
        self.show(f"scan_prefix(b'log:'): {sum(1 for _ in db.scan_prefix(b'log:'))} keys")
        it = db.scan(b"user:")
        head = next(it, None)
        if head is not None and _user(n // 2) > head[0]:  # seek must move forward
            it.seek(_user(n // 2))
            after = next(it, (b"-", b""))[0].decode()
            self.show(
                f"seek: first key {head[0].decode()}, then seek(user:{n // 2:05d}) -> {after}"
            )
        else:
            self.show("seek: skipped (too few keys to seek forward)")
        remote = sum(1 for _ in db.scan(durability="remote"))
        self.show(f"durability='remote' scan (durable writes only): {remote:,} keys")

        self.step("Snapshot: a consistent view while writes go on")
        with db.snapshot() as snap:
            db.put(_user(1), b"changed after the snapshot")
            self.show(f"snapshot seq {snap.seq}: get(user:00001) = {snap.get(_user(1))!r}")
            self.show(f"database:          get(user:00001) = {db.get(_user(1))!r}")
        self.model[_user(1)] = b"changed after the snapshot"

        self.step("Flush the memtable to L0 (flush(memtable=True))")
        db.flush(memtable=True)
        met = db.metrics()
        self.show(
            f"L0 SSTs: {met['l0_sst_count']}, manifest {met['manifest_id']}, "
            f"replay_after_wal_id={db.manifest().replay_after_wal_id}"
        )
        self.show(f"files: {_files_line(db.store)}")

        self.step("Checkpoint: pin this state so GC keeps its files")
        cp = db.create_checkpoint(name="demo", lifetime=3600)
        self.show(f"checkpoint {cp.id} pins manifest {cp.manifest_id} for one hour")

        self.step(f"Write {LATE_KEYS} more keys late:* (durable, so only in the WAL for now)")
        batch = WriteBatch()
        for i in range(LATE_KEYS):
            batch.put(b"late:%05d" % i, b"late-%d" % i)
            self.model[b"late:%05d" % i] = b"late-%d" % i
        db.write(batch)
        met = db.metrics()
        self.show(f"last_seq={met['last_seq']} durable_seq={met['durable_seq']}")
        self.show(
            "metrics: "
            + ", ".join(
                f"{k}={met[k]}"
                for k in (
                    "write_batch_count",
                    "write_ops",
                    "wal_buffer_flushes",
                    "wal_bytes",
                    "immutable_memtable_flushes",
                    "l0_flush_bytes",
                    "get_count",
                    "scan_count",
                    "cache_hits",
                    "cache_misses",
                )
                if k in met
            )
        )
        self.verify(db, "before closing")

        self.step("Close and reopen (the reopen replays the WAL written after the L0 flush)")
        db.close()
        self.show(f"closed; files: {_files_line(db.store)}")
        db = Db.open(self.url, self.settings)
        try:
            met = db.metrics()
            self.show(
                f"reopened: manifest {met['manifest_id']}, writer_epoch="
                f"{db.manifest().writer_epoch}, replayed {met.get('wal_replayed_rows', 0)} "
                f"WAL rows, L0 SSTs: {met['l0_sst_count']}, last_seq={met['last_seq']}"
            )
            self.verify(db, "after reopening")

            self.step("Compaction")
            if self.compact(db):
                self.verify(db, "after compaction")
            self.step("Garbage collection")
            if self.collect(db):
                self.verify(db, "after GC")
        finally:
            db.close()
        self.say()
        self.say(f"done; files: {_files_line(db.store)}")

    def compact(self, db: Any) -> bool:
        """A full compaction (every L0 SST and sorted run into one run) by a standalone
        :class:`shale_compactor.Compactor`, while the writer stays open."""
        cls, why = _find("shale_compactor", "Compactor")
        if cls is None:
            self.show(f"skipped: {why}")
            return False
        from shale_compactor import FULL

        db.flush(memtable=True)  # the rows replayed from the WAL become an L0 SST too
        before = db.metrics()
        self.show(
            f"before: L0 SSTs {before['l0_sst_count']}, sorted runs {before['sorted_run_count']}"
        )
        settings = self.settings.replace(compactor_options=_default("CompactorOptions"))
        with cls.open(self.url, settings, merge_operator=db.merge_operator) as compactor:
            cid = compactor.submit(FULL)
            reports = compactor.run_once(timeout=120)
        for r in reports:
            self.show(
                f"compaction {r.id}: {r.status}, {len(r.l0_view_ids)} L0 SSTs + "
                f"{len(r.sorted_runs)} sorted runs -> run {r.destination} "
                f"({len(r.output_ssts)} SSTs, {r.bytes_in:,} -> {r.bytes_out:,} B, "
                f"{r.duration_s:.2f} s)" + (f", error {r.error}" if r.error else "")
            )
        if not any(r.id == cid and r.status == "completed" for r in reports):
            raise InternalError("the demo's full compaction did not complete", id=str(cid))
        db.refresh_manifest()
        met = db.metrics()
        self.show(
            f"after: L0 SSTs {met['l0_sst_count']}, sorted runs "
            f"{met['sorted_run_count']}, manifest {met['manifest_id']} (the compactor "
            "also wrote a safety checkpoint before dropping SSTs from the manifest)"
        )
        return True

    def collect(self, db: Any) -> bool:
        """One GC round with ``min_age=0`` by a standalone :class:`shale_gc.GarbageCollector`."""
        cls, why = _find("shale_gc", "GarbageCollector")
        if cls is None:
            self.show(f"skipped: {why}")
            return False
        from shale.settings import GarbageCollectorOptions, GcDirectoryOptions

        now = GcDirectoryOptions(interval=None, min_age=0.0)
        options = GarbageCollectorOptions(manifest=now, wal=now, compacted=now, compactions=now)
        before = _files_line(db.store)
        gc = cls(
            db.store, "", options, manifest_format_version=self.settings.manifest_format_version
        )
        report = gc.run_once()
        for kind, kr in report.kinds.items():
            self.show(f"{kind:<11} deleted {len(kr.deleted)} ({kr.bytes_freed:,} B)")
        for err in report.errors:
            self.show(f"error: {err}")
        self.show(f"files before: {before}")
        self.show(f"files after:  {_files_line(db.store)}")
        self.show(
            "kept: the latest manifest, checkpointed versions and their files, "
            "WAL SSTs not yet in L0"
        )
        return True


def _default(name: str) -> Any:
    from shale import settings as settings_module

    return getattr(settings_module, name)()


def _take(it: Any, n: int) -> list[Any]:
    out: list[Any] = []
    for row in it:
        if len(out) >= n:
            break
        out.append(row)
    return out


def run_demo(
    directory: str | None = None, *, keys: int = 3000, keep: bool = False, out: TextIO | None = None
) -> int:
    """Run the tour; return 0. Prints to ``out`` (default ``sys.stdout``).

    :param directory: an empty or new directory for the database; ``None`` makes a temp
        directory, removed at the end unless ``keep``.
    :param keys: how many ``user:*`` keys to write.
    :raises InvalidError: ``directory`` exists and is not an empty directory.
    :raises InternalError: the database disagreed with the model (a bug).
    """
    out = sys.stdout if out is None else out
    if isinstance(keys, bool) or not isinstance(keys, int) or keys < 0:
        raise InvalidError("keys must be an int >= 0", keys=keys)
    temp = directory is None
    if directory is None:
        root = pathlib.Path(tempfile.mkdtemp(prefix="shale-demo-"))
    else:
        root = pathlib.Path(directory)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise InvalidError("the demo needs an empty or new directory", dir=str(root))
        root.mkdir(parents=True, exist_ok=True)
    cleanup: Callable[[], None] | None = None
    if temp and not keep:
        cleanup = lambda: shutil.rmtree(root, ignore_errors=True)  # noqa: E731
    try:
        _Demo(root.resolve(), keys, out).run()
    finally:
        if cleanup is not None:
            cleanup()
            print(f"removed {root} (pass --keep or --dir to keep the database)", file=out)
    if not temp or keep:
        print(
            f"the database stays in {root}; try: shale scan {root} --prefix log: "
            "--merge-operator concat",
            file=out,
        )
    return 0
