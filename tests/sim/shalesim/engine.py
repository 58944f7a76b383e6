"""Runs a list of operations against a whole shale database and checks it against the model.

The system under test, in one process:

* a writer :class:`shale.Db` (reopened, crashed, fenced by a second writer along the way);
* a standalone :class:`shale_compactor.Compactor` driven with ``submit``/``run_once``;
* a :class:`shale_gc.GarbageCollector` run with ``min_age`` 0;
* the layered store of :mod:`shalesim.stores` (faults, lost replies, a full store);
* a :class:`shale.clock.ManualClock` that only the operations move.

Background work is made explicit so that one seed always does the same thing: the embedded
compactor and GC are off (``compactor_options=None``, ``garbage_collector_options=None``),
``flush_interval`` is ``None`` and the manifest poller sleeps for an hour; the simulation polls
(``refresh_manifest``) whenever simulated time passes ``poll_interval_ms``, runs the compactor
when L0 fills up, and after every operation waits until the writer's own threads are idle.
Retry back-offs of the engine are shortened while a run is going.

Every operation is followed by checks (the written keys, one random key); reopen, crash,
fencing, compaction and GC are followed by a check of every key and of forward, reverse and
prefix scans.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import pathlib
import random
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import shale.engine.db_status as db_status
from shale import ids
from shale.batch import Ttl, WriteBatch
from shale.clock import ManualClock
from shale.db import Db
from shale.errors import ClosedError, CloseReason, InvalidError, ShaleError, UnavailableError
from shale.keys import prefix_end
from shale.merge_operators import ConcatMergeOperator
from shale.meta.manifest_store import ManifestStore
from shale.objstore.protocol import ObjectNotFound
from shale.objstore.retrying import RetryPolicy
from shale.settings import CompactorOptions, GarbageCollectorOptions, GcDirectoryOptions, Settings
from shale_compactor import FULL, CompactionSpec, Compactor, CompactorStateView
from shale_compactor.scheduler import validate as validate_spec
from shale_faults import FaultRule, FaultyStore
from shale_gc import GarbageCollector
from shalesim import known
from shalesim.model import DELETE, MERGE, PUT, Model, Resolved
from shalesim.stores import FullStore, Gate, Handle, make_memory_store
from shalesim.workload import Config, Op, describe

ROOT = "db"
START_MS = 1_700_000_000_000
#: An operation running longer than this (wall seconds) is a hang.
OP_TIMEOUT_S = 30.0
#: Settling (waiting for the writer's background threads) longer than this is a hang.
SETTLE_TIMEOUT_S = 10.0


class SimFailure(Exception):
    """A check failed: ``kind`` names the check (shrinking keeps the kind)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"[{kind}] {message}")
        self.kind = kind
        self.message = message


class _StopRun(Exception):
    """A known defect whose consequences make the rest of the run meaningless."""


class SimHang(BaseException):
    """Raised asynchronously in the simulation thread by the watchdog."""


@dataclasses.dataclass
class KnownHit:
    kind: str
    op_index: int
    message: str
    issue: known.KnownIssue


@dataclasses.dataclass
class Result:
    seed: int | None
    ops_run: int
    failure: SimFailure | None
    failed_at: int | None  # index of the operation that failed (len(ops) = the final checks)
    events: list[str]
    known_hits: list[KnownHit]
    logs: list[str]
    seconds: float
    stats: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.failure is None


def show(value: bytes | None) -> str:
    """A value written by the workload, compactly: ``[a/01#5+12, a/01#9]``."""
    if value is None:
        return "None"
    parts = []
    for chunk in value.split(b";"):
        if not chunk:
            continue
        tag = chunk.lstrip(b".")
        pad = len(chunk) - len(tag)
        text = tag.decode("utf-8", "replace")
        parts.append(f"+{pad}" + (f" {text}" if text else "") if pad else text)
    return "[" + ", ".join(parts) + "]"


# ---------------------------------------------------------------------------------------------
# Process-wide tweaks while a run is going.


class _Ring(logging.Handler):
    def __init__(self, size: int = 60) -> None:
        super().__init__(logging.INFO)
        self.records: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:
            pass


_LOGGERS = ("shale", "shale_compactor", "shale_gc", "shale_faults")
#: The compactor's retry policies in a run (set on each compactor it starts).
COMMIT_RETRY = RetryPolicy(max_retries=5, min_delay=0.005, max_delay=0.02, jitter="none")
UPLOAD_RETRY = RetryPolicy(max_retries=1, min_delay=0.1, max_delay=0.1, jitter="none")


@contextmanager
def _quiet_and_fast() -> Iterator[_Ring]:
    """Short retry back-offs; shale's logs go to a ring buffer (shown on failure)."""
    saved = (db_status.RETRY_MIN_S, db_status.RETRY_MAX_S)
    db_status.RETRY_MIN_S, db_status.RETRY_MAX_S = 0.005, 0.02
    ring = _Ring()
    loggers = [logging.getLogger(n) for n in _LOGGERS]
    old = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(ring)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield ring
    finally:
        db_status.RETRY_MIN_S, db_status.RETRY_MAX_S = saved
        for lg, (level, propagate) in zip(loggers, old, strict=True):
            lg.removeHandler(ring)
            lg.setLevel(level)
            lg.propagate = propagate


def _thread_stacks() -> str:
    """The innermost frames of every thread (for a hang report)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        name = names.get(ident, str(ident))
        if name == "shalesim-watchdog":
            continue
        frames = traceback.extract_stack(frame)[-4:]
        where = " <- ".join(
            f"{pathlib.Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames)
        )
        out.append(f"    thread {name}: {where}")
    return "\n".join(out)


class _Watchdog:
    """Raises :class:`SimHang` in the simulation thread when one step runs too long."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.target = threading.get_ident()
        self.step_started: float | None = None
        self.what = ""
        self.fired = False
        self.stacks = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shalesim-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.what = what
        self.step_started = time.monotonic()
        try:
            yield
        finally:
            self.step_started = None

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            started = self.step_started
            if started is None or self.fired or time.monotonic() - started < self.limit_s:
                continue
            self.fired = True
            self.stacks = _thread_stacks()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.target), ctypes.py_object(SimHang)
            )


# ---------------------------------------------------------------------------------------------
# The simulation.


class Simulation:
    def __init__(self, config: Config, ops: list[Op], *, seed: int | None = None) -> None:
        self.config = config
        self.ops = ops
        self.seed = seed
        self.clock = ManualClock(START_MS)
        self.mem = make_memory_store(lambda: self.clock.now_ms() / 1000)
        self.full = FullStore(self.mem)
        self.gate = Gate(self.full)
        self.model = Model()
        self.events: list[str] = []
        self.known_hits: list[KnownHit] = []
        self.stats: dict[str, int] = {}
        self.op_index = 0
        self.db: Db | None = None
        self.db_handle: Handle | None = None
        self.generation = 0
        self.compactor: Compactor | None = None
        self.compactor_handle: Handle | None = None
        self.compactor_generation = 0
        self.snapshots: list[tuple[Any, int]] = []
        self.checkpoints: list[tuple[Any, int | None]] = []  # (id, removable from ms)
        self.fault_left = 0
        self.full_left = 0
        self.last_poll = self.clock.now_ms()
        self.rng = random.Random(config["db_seed"] ^ 0x5EED)  # for checks only, never ops
        self.keys = [
            f"{p}{i:02d}" for p in config["prefixes"] for i in range(config["keys_per_prefix"])
        ]
        self.wal = bool(config.get("wal_enabled", True))
        self.settings = Settings(
            flush_interval=None,
            wal_enabled=self.wal,
            manifest_poll_interval=3600.0,
            l0_sst_size_bytes=config["l0_sst_size_bytes"],
            l0_max_ssts=config["l0_max_ssts"],
            max_wal_flushes_before_l0_flush=config["max_wal_flushes_before_l0_flush"],
            l0_flush_parallelism=config.get("l0_flush_parallelism", 4),
            block_size=config["block_size"],
            min_filter_keys=config["min_filter_keys"],
            compression_codec=config["compression_codec"],
            default_ttl=config["default_ttl"],
            merge_operator="concat",
            compactor_options=None,
            garbage_collector_options=None,
            block_cache_bytes=1 << 20,
        )
        self.compactor_options = CompactorOptions(
            poll_interval=3600.0,
            max_sst_size=config["max_sst_size"],
            max_concurrent_compactions=1,
            max_fetch_tasks=1,
            min_compaction_sources=config["min_compaction_sources"],
            max_compaction_sources=8,
            checkpoint_lifetime=config["checkpoint_lifetime"],
        )
        every = GcDirectoryOptions(interval=None, min_age=0.0)
        self.gc_options = GarbageCollectorOptions(
            manifest=every, wal=every, compacted=every, compactions=every
        )
        self.id_rng = random.Random(config["db_seed"])

    # -- bookkeeping --------------------------------------------------------------------------

    def event(self, text: str) -> None:
        self.events.append(f"{self.op_index}: {text}")

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def fail(self, kind: str, message: str) -> None:
        raise SimFailure(kind, message)

    def known_hit(self, kind: str, message: str) -> None:
        issue = known.known_kind(kind)
        if issue is None:
            self.fail(kind, message)
        assert issue is not None
        self.event(f"KNOWN {issue.item}: {message}")
        self.known_hits.append(KnownHit(kind, self.op_index, message, issue))
        if issue.stops_run:
            raise _StopRun

    @property
    def faulty(self) -> bool:
        """Store faults or a full store are in effect."""
        return self.gate.armed is not None or self.full.capacity is not None

    def now(self) -> int:
        return self.clock.now_ms()

    # -- clients ------------------------------------------------------------------------------

    def open_writer(self) -> tuple[Db, Handle]:
        """Open a writer; inside a fault window an open may fail and is retried."""
        for attempt in range(6):
            self.generation += 1
            handle = Handle(self.gate, f"writer-{self.generation}")
            settings = self.settings.replace(seed=self.id_rng.randrange(2**63))
            try:
                db = Db.open(
                    ROOT,
                    settings,
                    object_store=handle,
                    merge_operator=ConcatMergeOperator(),
                    clock=self.clock,
                )
            except UnavailableError as exc:
                if not self.faulty:
                    self.fail("open", f"open failed without faults: {exc!r}")
                self.event(f"open failed (faults): {type(exc).__name__}")
                if attempt >= 2:
                    self.end_windows()
                continue
            except ClosedError as exc:
                self.fail("open", f"open raised {exc!r}")
            self.check_clock(db)
            return db, handle
        self.fail("open", "could not open the writer")
        raise AssertionError  # unreachable

    def check_clock(self, db: Db) -> None:
        if db.clock.now_ms() != self.now():
            self.fail("clock", f"db clock {db.clock.now_ms()} != simulated {self.now()}")

    def the_db(self) -> Db:
        assert self.db is not None
        return self.db

    def get_compactor(self) -> Compactor:
        if self.compactor is None:
            self.compactor_generation += 1
            self.compactor_handle = Handle(self.gate, f"compactor-{self.compactor_generation}")
            self.compactor = Compactor(
                self.compactor_handle,
                ROOT,
                self.settings,
                merge_operator=ConcatMergeOperator(),
                clock=self.clock,
                options=self.compactor_options,
                rand=random.Random(self.config["compactor_seed"] + self.compactor_generation),
            )
            # short, bounded back-offs (the compactor's retries happen in real time, its fault
            # windows in simulated time): a commit is retried 5 times, an upload once
            self.compactor.retry = COMMIT_RETRY
            self.compactor.executor.retry = UPLOAD_RETRY
        return self.compactor

    def latest_manifest(self) -> Any:
        """The newest manifest, read from the raw store (no faults)."""
        found = ManifestStore(self.mem, ROOT).read_latest()
        assert found is not None
        return found[1]

    # -- settling, windows, polling -----------------------------------------------------------

    def settle(self) -> None:
        """Wait until the writer's background threads have nothing left to do.

        Inside a fault window background retries are waited for too (briefly), so the faults
        they draw do not depend on thread timing; a full store stops that wait as soon as it
        rejects a background upload (those retries last until the window ends).
        """
        db = self.db
        if db is None:
            return
        faulty = self.faulty
        deadline = time.monotonic() + (1.0 if faulty else SETTLE_TIMEOUT_S)
        rejected = self.full.rejected
        l0_max = self.config["l0_max_ssts"]
        while True:
            if db.close_reason is not None:
                if faulty:
                    return
                self.fail("closed", f"the writer closed itself: {db.close_reason}")
            m = db.metrics()
            idle = m["immutable_memtables"] == 0 or m["l0_sst_count"] >= l0_max
            # (test-only peek: a WAL upload still being retried in the background)
            wal = db._inner.wal
            if idle and (wal is None or wal.health.error is None):
                return
            if faulty and self.full.capacity is not None and self.full.rejected != rejected:
                return
            if time.monotonic() > deadline:
                if faulty:
                    self.event("background work still retrying")
                    return
                self.fail("hang", f"writer not idle after {SETTLE_TIMEOUT_S}s: {m}")
            time.sleep(0.0005)

    def end_windows(self) -> None:
        if self.gate.armed is not None:
            faulty = self.gate.disarm()
            assert faulty is not None
            if faulty.injected:
                self.event(f"faults injected: {dict(faulty.counts)}")
        if self.full.capacity is not None:
            self.full.capacity = None
            self.event("store no longer full")
        self.fault_left = self.full_left = 0
        self.settle()
        self.poll()

    def poll(self) -> None:
        """What the manifest poller does: re-read the manifest."""
        db = self.db
        if db is None:
            return
        try:
            db.refresh_manifest()
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("poll", f"refresh_manifest failed without faults: {exc!r}")
            return
        self.last_poll = self.now()
        self.wake_l0()

    def wake_l0(self) -> None:
        # test-only: the L0 flusher waits for the next poll when L0 was full; our poll is it
        db = self.db
        if db is not None:
            db._inner.flusher.wake()

    def l0_housekeeping(self) -> None:
        """The compactor's poll: compact when L0 is (nearly) full, as a running one would."""
        db = self.db
        if db is None or self.faulty:
            return
        l0_max = self.config["l0_max_ssts"]
        if db.metrics()["l0_sst_count"] < l0_max - 1:
            return
        self.event("auto-compact (L0 nearly full)")
        self.count("auto_compact")
        self.compact("full")
        self.poll()
        self.settle()

    # -- running ------------------------------------------------------------------------------

    def run(self) -> Result:
        started = time.monotonic()
        failure: SimFailure | None = None
        failed_at: int | None = None
        with _quiet_and_fast() as ring, _Watchdog(OP_TIMEOUT_S) as dog:
            try:
                with dog.step("open"):
                    self.db, self.db_handle = self.open_writer()
                for i, op in enumerate(self.ops):
                    self.op_index = i
                    with dog.step(describe(op)):
                        self.step(op)
                self.op_index = len(self.ops)
                with dog.step("final checks"):
                    self.final()
            except SimFailure as exc:
                failure, failed_at = exc, self.op_index
            except _StopRun:
                self.event("run stopped after the known defect")
            except SimHang:
                failure = SimFailure(
                    "hang", f"step ran over {OP_TIMEOUT_S}s: {dog.what}\n{dog.stacks}"
                )
                failed_at = self.op_index
            except ShaleError as exc:
                where = traceback.extract_tb(exc.__traceback__)
                mine = [f for f in where if "shalesim" in f.filename][-2:]
                last = "; ".join(
                    f"{pathlib.Path(f.filename).name}:{f.lineno} {f.name}"
                    for f in [*mine, *where[-3:]]
                )
                failure = SimFailure("unexpected-error", f"{type(exc).__name__}: {exc} (at {last})")
                failed_at = self.op_index
            finally:
                try:
                    self.teardown()
                except (Exception, SimHang):
                    pass
            logs = list(ring.records)
        return Result(
            seed=self.seed,
            ops_run=self.op_index,
            failure=failure,
            failed_at=failed_at,
            events=self.events,
            known_hits=self.known_hits,
            logs=logs,
            seconds=time.monotonic() - started,
            stats=self.stats,
        )

    def teardown(self) -> None:
        self.gate.disarm()
        self.full.capacity = None
        for snap, _ in self.snapshots:
            snap.close()
        self.snapshots = []
        if self.db is not None:
            db, self.db = self.db, None
            if self.db_handle is not None:
                self.db_handle.cut()  # whatever state it is in, it must not outlive the run
            self.reap(db)
        if self.compactor is not None:
            c, self.compactor = self.compactor, None
            c.close()

    def step(self, op: Op) -> None:
        name = op["op"]
        self.count(name)
        getattr(self, "op_" + name)(op)
        self.settle()  # background work the op started runs under the same faults, always
        if self.fault_left:
            self.fault_left -= 1
            if not self.fault_left and self.gate.armed is not None:
                self.end_windows()
        if self.full_left:
            self.full_left -= 1
            if not self.full_left and self.full.capacity is not None:
                self.end_windows()
        self.settle()
        self.l0_housekeeping()
        # after every operation: one random key (the written ones were checked already)
        self.check_get(self.rng.choice(self.keys))

    def final(self) -> None:
        self.end_windows()
        self.op_reopen({"op": "reopen"})
        self.compact("full")
        self.poll()
        self.op_gc({"op": "gc"})
        self.check_all()

    # -- writes -------------------------------------------------------------------------------

    def _expire(self, ttl: Any, now: int) -> tuple[Any, int | None]:
        """The API argument for a workload TTL, and the expire_ts the model expects."""
        default = self.config["default_ttl"]
        if ttl is None:
            return None, (now + default if default else None)
        if isinstance(ttl, int):
            return ttl, now + ttl
        if ttl[0] == "at":
            at = max(0, now + ttl[1])
            return Ttl.at(at), at
        return Ttl.no_expiry(), None

    @staticmethod
    def _value(val: str, pad: int) -> bytes:
        return b"." * pad + val.encode()

    def _write(
        self,
        call: Callable[[Db], Any],
        mops: list[tuple[str, bytes, bytes, int | None]],
        durable: bool,
        *,
        may_reject: bool = False,
        gap: int = 1,
    ) -> None:
        """Run one write and check its seq (``gap`` above the last one: a caller-chosen seq
        when not 1) against the model."""
        db = self.the_db()
        if durable and not self.wal:
            # with the WAL off a durable write waits for its L0 flush
            if self.full.capacity is not None and self.avoided("wal-off-outage", "durable write"):
                return
            if not self.l0_room("durable write"):
                return
        before = self.model.committed
        last = db.metrics()["last_seq"]
        if last != before:
            self.fail("seq", f"writer's last_seq {last} != model's {before}")
        try:
            handle = call(db)
        except InvalidError as exc:
            # issue 9 item 2 allows rejecting a batch with several ops and different TTLs on
            # one key, before anything is written
            if not may_reject:
                self.fail("write", f"write rejected: {exc!r}")
            if db.metrics()["last_seq"] != before:
                self.fail("seq", f"a rejected batch was committed: {exc!r}")
            self.event(f"batch rejected ({exc.message[:60]})")
            return
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("write", f"write failed without faults: {exc!r}")
            after = db.metrics()["last_seq"]
            if after == before + gap:
                self.model.apply(after, mops)
                self.event(
                    f"write seq={after} committed, durability unknown ({type(exc).__name__})"
                )
            elif after == before:
                self.event(f"write rejected ({type(exc).__name__})")
            else:
                self.fail("seq", f"last_seq went {before} -> {after} on one failed write")
            return
        except ClosedError as exc:
            self.fail("closed", f"write raised {exc!r}")
            return
        if handle.seq != before + gap:
            self.fail("seq", f"write got seq {handle.seq}, expected {before + gap}")
        if handle.create_ts != self.now():
            self.fail("clock", f"create_ts {handle.create_ts} != {self.now()}")
        self.model.apply(handle.seq, mops)
        if durable:
            self.model.acked = handle.seq
        self.event(f"write seq={handle.seq}{' durable' if durable else ''}")
        for key in sorted({k for _kind, k, _v, _e in mops}):
            self.check_get(key.decode())

    def op_put(self, op: Op) -> None:
        now = self.now()
        arg, expire = self._expire(op["ttl"], now)
        k, v = op["key"].encode(), self._value(op["val"], op["pad"])
        self._write(
            lambda db: db.put(k, v, ttl=arg, durable=op["durable"]),
            [(PUT, k, v, expire)],
            op["durable"],
        )

    def op_put_seq(self, op: Op) -> None:
        """A put with ``seqnum`` = the last seq + ``gap``; ``gap`` 0 must be refused, leaving
        no trace (on an empty database it is a gap of 1: seq 1 is above the last, 0)."""
        now = self.now()
        k, v = op["key"].encode(), self._value(op["val"], op["pad"])
        gap = op["gap"] if op["gap"] > 0 or self.model.committed > 0 else 1
        if gap <= 0:
            db = self.the_db()
            before = db.metrics()["last_seq"]
            try:
                db.put(k, v, durable=op["durable"], seqnum=before)
            except InvalidError:
                if db.metrics()["last_seq"] != before:
                    self.fail("seq", "a refused seqnum moved last_seq")
                self.event("seqnum refused")
            except (UnavailableError, ClosedError) as exc:
                self.fail("write", f"a seqnum not above the last raised {exc!r}")
            else:
                self.fail("seq", f"seqnum {before} (not above the last) was accepted")
            return
        arg, expire = self._expire(None, now)
        seqnum = self.model.committed + gap
        self._write(
            lambda db: db.put(k, v, ttl=arg, durable=op["durable"], seqnum=seqnum),
            [(PUT, k, v, expire)],
            op["durable"],
            gap=gap,
        )

    def op_merge(self, op: Op) -> None:
        now = self.now()
        arg, expire = self._expire(op["ttl"], now)
        k, v = op["key"].encode(), self._value(op["val"], op["pad"])
        self._write(
            lambda db: db.merge(k, v, ttl=arg, durable=op["durable"]),
            [(MERGE, k, v, expire)],
            op["durable"],
        )

    def op_delete(self, op: Op) -> None:
        k = op["key"].encode()
        self._write(
            lambda db: db.delete(k, durable=op["durable"]), [(DELETE, k, b"", None)], op["durable"]
        )

    def op_batch(self, op: Op) -> None:
        now = self.now()
        batch = WriteBatch()
        mops: list[tuple[str, bytes, bytes, int | None]] = []
        for item in op["items"]:
            k = item[1].encode()
            if item[0] == "delete":
                batch.delete(k)
                mops.append((DELETE, k, b"", None))
                continue
            v = self._value(item[2], item[3])
            arg, expire = self._expire(item[4], now)
            if item[0] == "put":
                batch.put(k, v, ttl=arg)
                mops.append((PUT, k, v, expire))
            else:
                batch.merge(k, v, ttl=arg)
                mops.append((MERGE, k, v, expire))
        ttls: dict[str, set[str]] = {}
        for item in op["items"]:
            ttls.setdefault(item[1], set()).add(repr(item[4]) if item[0] != "delete" else "-")
        mixed = any(len(t) > 1 for t in ttls.values())
        self._write(
            lambda db: db.write(batch, durable=op["durable"]),
            mops,
            op["durable"],
            may_reject=mixed,
        )

    # -- reads --------------------------------------------------------------------------------

    def _versions(self, key: bytes) -> str:
        rows = self.model.versions.get(key, [])
        return ", ".join(
            f"{s}{'.' + str(i) if i else ''}:{kind}{show(v) if kind != DELETE else ''}"
            + (f"@exp{e - START_MS}" if e is not None else "")
            for s, i, kind, v, e in rows
        )

    def _compare(self, where: str, key: bytes, seq: int, exp: Resolved | None, got: Any) -> None:
        bad = None
        if exp is None and got is None:
            return
        if exp is None:
            bad = f"got {show(got.value)} seq={got.seq}, expected nothing"
        elif got is None:
            bad = f"got nothing, expected {show(exp.value)} seq={exp.seq}"
        elif got.value != exp.value or got.seq != exp.seq:
            bad = f"got {show(got.value)} seq={got.seq}, expected {show(exp.value)} seq={exp.seq}"
        elif not exp.merged and got.expire_ts != exp.expire_ts:
            bad = f"expire_ts {got.expire_ts} != expected {exp.expire_ts}"
        if bad:
            self.fail(
                where,
                f"{where} {key.decode()!r} at seq {seq} (now=+{self.now() - START_MS}ms): {bad}"
                f"; versions: {self._versions(key)}",
            )

    def check_get(self, key: str, *, snap: Any = None, snap_seq: int | None = None) -> None:
        db = self.db
        if db is None:
            return
        k = key.encode()
        now = self.now()
        try:
            if snap is not None:
                assert snap_seq is not None
                seq, where = snap_seq, "snapshot-get"
                got = snap.get_key_value(k)
            else:
                seq, where = self.model.committed, "get"
                got = db.get_key_value(k)
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("read-error", f"get {key!r} failed without faults: {exc!r}")
            return
        except ClosedError as exc:
            self.fail("closed", f"get raised {exc!r}")
            return
        self._compare(where, k, seq, self.model.resolve(k, seq, now), got)

    def check_scan(
        self,
        start: str | None,
        end: str | None,
        reverse: bool,
        *,
        snap: Any = None,
        snap_seq: int | None = None,
        prefix: str | None = None,
        take: int | None = None,
        seek: str | None = None,
    ) -> None:
        db = self.db
        if db is None:
            return
        seq = self.model.committed if snap is None else snap_seq
        assert seq is not None
        source = db if snap is None else snap
        kind = ("reverse-scan" if reverse else "scan") if prefix is None else "scan-prefix"
        if snap is not None:
            kind = "snapshot-" + kind
        s = start.encode() if start is not None else None
        e = end.encode() if end is not None else None
        if prefix is not None:
            s = prefix.encode() or None
            e = prefix_end(prefix.encode())
        expect = self.model.scan(s, e, seq, self.now(), reverse)
        what = f"{kind}({s!r}, {e!r}) at seq {seq}"
        try:
            if prefix is not None:
                it = source.scan_prefix(prefix.encode(), reverse=reverse)
            else:
                it = source.scan(s, e, reverse=reverse)
            got: list[tuple[bytes, bytes]] = []
            if take is not None and seek is not None:
                for _ in range(take):
                    item = next(it, None)
                    if item is None:
                        break
                    got.append(item)
                self._compare_lists(what + " before seek", got, expect[: len(got)])
                last = got[-1][0] if got else None
                sk = seek.encode()
                valid = not ((s is not None and sk < s) or (e is not None and sk >= e))
                if last is not None and (sk <= last if not reverse else sk >= last):
                    valid = False
                try:
                    it.seek(sk)
                except InvalidError:
                    if valid:
                        self.fail(kind, f"{what}: seek({sk!r}) after {last!r} refused")
                    expect = expect[len(got) :]
                else:
                    if not valid:
                        self.fail(kind, f"{what}: invalid seek({sk!r}) after {last!r} accepted")
                    expect = [kv for kv in expect if (kv[0] >= sk if not reverse else kv[0] <= sk)]
                what += f" after {len(got)} items and seek({sk!r})"
                got = []
            got.extend(it)
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("read-error", f"{what} failed without faults: {exc!r}")
            return
        self._compare_lists(what, got, expect)

    def _compare_lists(
        self, what: str, got: list[tuple[bytes, bytes]], expect: list[tuple[bytes, bytes]]
    ) -> None:
        if got == expect:
            return
        kind = what.split("(")[0]
        for i, (g, x) in enumerate(zip(got, expect, strict=False)):
            if g != x:
                self.fail(
                    kind,
                    f"{what}: item {i} is {g[0]!r}={show(g[1])}, expected {x[0]!r}={show(x[1])}"
                    f"; versions of {x[0].decode()!r}: {self._versions(x[0])}",
                )
        extra = got[len(expect) :] or expect[len(got) :]
        which = "unexpected" if len(got) > len(expect) else "missing"
        k = extra[0][0]
        self.fail(
            kind,
            f"{what}: {which} {k!r}={show(extra[0][1])} (got {len(got)} items, expected "
            f"{len(expect)}); versions: {self._versions(k)}",
        )

    def check_remote(self, key: str) -> None:
        db = self.the_db()
        durable = db.metrics()["durable_seq"]
        if durable < self.model.acked or durable > self.model.committed:
            self.fail(
                "durable-seq",
                f"durable_seq {durable} outside [acked {self.model.acked}, committed "
                f"{self.model.committed}]",
            )
        k = key.encode()
        try:
            got = db.get_key_value(k, durability="remote")
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("read-error", f"remote get failed without faults: {exc!r}")
            return
        self._compare("remote-get", k, durable, self.model.resolve(k, durable, self.now()), got)

    def check_all(self) -> None:
        """Every key, both scan directions, every prefix, and each open snapshot's view."""
        for key in self.keys:
            self.check_get(key)
        self.check_scan(None, None, False)
        self.check_scan(None, None, True)
        for p in self.config["prefixes"]:
            self.check_scan(None, None, True, prefix=p)
        for snap, seq in self.snapshots:
            for key in self.keys:
                self.check_get(key, snap=snap, snap_seq=seq)
            self.check_scan(None, None, True, snap=snap, snap_seq=seq)

    def op_get(self, op: Op) -> None:
        self.check_get(op["key"])

    def op_get_remote(self, op: Op) -> None:
        self.check_remote(op["key"])

    def op_scan(self, op: Op) -> None:
        self.check_scan(
            op["start"], op["end"], op["reverse"], take=op.get("take"), seek=op.get("seek")
        )

    def op_prefix(self, op: Op) -> None:
        self.check_scan(None, None, op["reverse"], prefix=op["prefix"])

    # -- snapshots ----------------------------------------------------------------------------

    def op_snap_open(self, op: Op) -> None:
        snap = self.the_db().snapshot()
        if snap.seq != self.model.committed:
            self.fail("snapshot", f"snapshot seq {snap.seq} != committed {self.model.committed}")
        self.snapshots.append((snap, snap.seq))
        self.event(f"snapshot at seq {snap.seq}")

    def _snap(self, op: Op) -> tuple[Any, int] | None:
        if not self.snapshots:
            return None
        return self.snapshots[op["pick"] % len(self.snapshots)]

    def op_snap_read(self, op: Op) -> None:
        found = self._snap(op)
        if found is not None:
            self.check_get(op["key"], snap=found[0], snap_seq=found[1])

    def op_snap_scan(self, op: Op) -> None:
        found = self._snap(op)
        if found is not None:
            self.check_scan(op["start"], op["end"], op["reverse"], snap=found[0], snap_seq=found[1])

    def op_snap_close(self, op: Op) -> None:
        found = self._snap(op)
        if found is not None:
            found[0].close()
            self.snapshots.remove(found)

    def drop_snapshots(self) -> None:
        for snap, _ in self.snapshots:
            snap.close()
        self.snapshots = []

    # -- time ---------------------------------------------------------------------------------

    def op_tick(self, op: Op) -> None:
        self.clock.advance(op["ms"])
        if self.now() - self.last_poll >= self.config["poll_interval_ms"]:
            self.poll()

    def op_poll(self, op: Op) -> None:
        self.poll()

    # -- flushes ------------------------------------------------------------------------------

    def avoided(self, shape: str, what: str) -> bool:
        """Whether to leave out an operation that would run into a known open defect."""
        if shape not in self.config.get("avoid", ()):
            return False
        self.event(f"{what} skipped: known defect shape {shape!r}")
        return True

    def op_flush(self, op: Op) -> None:
        if self.full.capacity is not None and self.avoided("flush-during-outage", "flush"):
            return
        db = self.the_db()
        if not self.wal and not self.l0_room("flush"):
            return
        committed = self.model.committed
        try:
            db.flush()
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("flush", f"flush failed without faults: {exc!r}")
            self.event(f"flush failed ({type(exc).__name__})")
            return
        self.model.acked = committed
        self.event("flushed")

    def l0_room(self, what: str) -> bool:
        """Make room in L0 for one more flush, as a running compactor would.

        ``flush(memtable=True)`` (and, with the WAL off, ``flush()`` and durable writes) wait
        for L0 to have room; with nothing compacting that wait never ends (issue 9 item 9).
        """
        db = self.the_db()
        l0_max = self.config["l0_max_ssts"]
        m = db.metrics()
        if m["l0_sst_count"] + m["immutable_memtables"] + 1 <= l0_max:
            return True
        if self.faulty:
            self.event(f"{what} skipped: L0 full during faults")
            return False
        self.compact("full")
        self.poll()
        self.settle()
        m = db.metrics()
        if m["l0_sst_count"] + m["immutable_memtables"] + 1 > l0_max:
            self.event(f"{what} skipped: L0 still full")
            return False
        return True

    def op_flush_mem(self, op: Op) -> None:
        if self.full.capacity is not None and self.avoided("flush-during-outage", "flush_mem"):
            return
        db = self.the_db()
        if not self.l0_room("flush_mem"):
            return
        committed = self.model.committed
        try:
            db.flush(memtable=True)
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("flush", f"flush(memtable=True) failed without faults: {exc!r}")
            self.event(f"flush_mem failed ({type(exc).__name__})")
            return
        self.model.acked = committed
        self.event(f"flushed memtable (L0={db.metrics()['l0_sst_count']})")

    # -- compaction and GC ----------------------------------------------------------------------

    def compact(self, mode: str) -> None:
        c = self.get_compactor()
        try:
            if mode in ("full", "l0"):
                spec: Any = FULL
                if mode == "l0":
                    m = self.latest_manifest()
                    if not m.l0:
                        spec = None
                    else:
                        dest = m.compacted[0].id + 1 if m.compacted else 0
                        spec = CompactionSpec(tuple(v.id for v in m.l0), (), dest)
                if spec is not None:
                    try:
                        c.submit(spec)
                    except InvalidError as exc:
                        self.event(f"compaction not submitted: {exc.message[:60]}")
            before = self.latest_manifest()
            reports = c.run_once(timeout=60)
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("compaction", f"compactor failed without faults: {exc!r}")
            self.event(f"compaction failed ({type(exc).__name__})")
            return
        except ClosedError as exc:
            self.fail("compaction", f"compactor closed: {exc!r}")
            return
        latest = self.latest_manifest()
        for r in reports:
            self.event(
                f"compaction {r.status}: l0={len(r.l0_view_ids)} runs={list(r.sorted_runs)} "
                f"dest={r.destination} outputs={len(r.output_ssts)}"
            )
            if r.status == "completed":
                self.check_committed(r, latest)
            elif self.no_longer_valid(r, before):
                # a spec submitted earlier that no longer fits the manifest is failed: normal
                self.count("stale_compaction_failed")
            elif not self.faulty:
                self.fail("compaction", f"compaction {r.status} without faults: {r.error}")
        self.check_integrity()

    @staticmethod
    def no_longer_valid(r: Any, m: Any) -> bool:
        """Whether a failed compaction's spec really does not fit the manifest it started on."""
        spec = CompactionSpec(r.l0_view_ids, r.sorted_runs, r.destination)
        try:
            validate_spec(CompactorStateView(None, m), spec)
        except InvalidError:
            return True
        return False

    def check_committed(self, r: Any, m: Any) -> None:
        """A compaction reported completed is in the manifest: sources gone, outputs in place."""
        left = {v.id for v in m.l0} & set(r.l0_view_ids)
        runs = {run.id: {v.sst.id for v in run.ssts} for run in m.compacted}
        outputs = {sst.id for sst in r.output_ssts}
        problems = []
        if left:
            problems.append(f"{len(left)} of its L0 sources are still in L0")
        if outputs and not outputs <= runs.get(r.destination, set()):
            problems.append(f"its outputs are not in sorted run {r.destination}")
        gone = set(r.sorted_runs) - {r.destination}
        if gone & set(runs):
            problems.append(f"source runs {sorted(gone & set(runs))} are still there")
        if problems:
            self.known_hit(
                "compaction-not-committed",
                f"compaction {r.id} reported completed but " + "; ".join(problems),
            )

    def op_compact(self, op: Op) -> None:
        self.compact(op["mode"])

    def op_compactor_restart(self, op: Op) -> None:
        old = self.compactor
        old_handle = self.compactor_handle
        self.compactor = None
        new = self.get_compactor()
        if old is None or old.epoch is None:  # never started: nothing to fence
            if old is not None:
                old.close()
            return
        crash = self.rng.random() < 0.5
        if crash:
            assert old_handle is not None
            old_handle.cut()
        try:
            new.start()
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("compaction", f"compactor start failed without faults: {exc!r}")
        if not crash and not self.faulty:
            # fenced: "its next write raises ClosedError(fenced), it writes nothing more"
            assert old_handle is not None
            writes = old_handle.writes_ok
            try:
                old.submit(FULL)
                old.run_once(timeout=60)
            except InvalidError:
                pass  # nothing to compact: no write was attempted
            except ClosedError as exc:
                if exc.reason != CloseReason.FENCED:
                    self.fail("fencing", f"old compactor closed with {exc.reason}, not fenced")
            else:
                self.fail("fencing", "an old compactor submitted a compaction after being fenced")
            if old_handle.writes_ok != writes:
                self.fail("fencing", "a fenced compactor wrote to the store")
        old.close()
        self.event(f"compactor restarted ({'crash' if crash else 'fenced'})")

    def op_gc(self, op: Op) -> None:
        assert self.mem is not None
        gc = GarbageCollector(
            Handle(self.gate, "gc"),
            ROOT,
            self.gc_options,
            clock=self.clock,
            manifest_format_version=self.settings.manifest_format_version,
        )
        report = gc.run_once()
        errors = list(report.errors) + [
            f"{k.kind}: {k.error or k.failed}" for k in report.kinds.values() if k.error or k.failed
        ]
        if errors and not self.faulty:
            self.fail("gc", f"GC reported errors without faults: {errors}")
        self.event(f"gc deleted {len(report.deleted)} objects")
        self.check_integrity()
        if not self.faulty:
            self.check_all()

    # -- checkpoints ----------------------------------------------------------------------------

    def op_checkpoint(self, op: Op) -> None:
        """A checkpoint pins a manifest version: GC must keep every SST it names (checked by
        :meth:`check_integrity` after each GC) until it expires or is deleted."""
        db = self.the_db()
        if op["scope"] == "all":  # flushes the memtable to L0 first
            if self.full.capacity is not None and self.avoided("flush-during-outage", "checkpoint"):
                return
            if not self.l0_room("checkpoint"):
                return
        committed = self.model.committed
        try:
            cp = db.create_checkpoint(scope=op["scope"], lifetime=op["lifetime"])
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("checkpoint", f"create_checkpoint failed without faults: {exc!r}")
            self.event(f"checkpoint failed ({type(exc).__name__})")
            return
        if op["scope"] == "all":
            self.model.acked = committed
        listed = {c.id for c in db.list_checkpoints()} if not self.faulty else {cp.id}
        if cp.id not in listed:
            self.fail("checkpoint", f"checkpoint {cp.id} is not listed right after creation")
        lifetime = op["lifetime"]
        # removable once now_s > expire_s = now_s at creation + lifetime (whole seconds)
        gone_after = None if lifetime is None else (self.now() // 1000 + int(lifetime) + 1) * 1000
        self.checkpoints.append((cp.id, gone_after))
        self.event(f"checkpoint at manifest {cp.manifest_id} ({op['scope']}, {op['lifetime']}s)")

    def op_checkpoint_delete(self, op: Op) -> None:
        if not self.checkpoints:
            return
        cid, gone_after = self.checkpoints.pop(op["pick"] % len(self.checkpoints))
        try:
            self.the_db().delete_checkpoint(cid)
        except InvalidError as exc:
            if gone_after is None or self.now() < gone_after:
                self.fail("checkpoint", f"a live checkpoint is gone: {exc}")
            self.event("checkpoint delete: it had expired and was removed already")
            return
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("checkpoint", f"delete_checkpoint failed without faults: {exc!r}")
            self.event("checkpoint delete failed (it may have happened: not retried)")
            return
        self.event("checkpoint deleted")

    def check_integrity(self) -> None:
        """Every SST the latest manifest, its checkpoints and the writer's view name exists."""
        ms = ManifestStore(self.mem, ROOT)
        found = ms.read_latest()
        if found is None:
            self.fail("integrity", "no manifest")
            return
        manifests = [("latest", found[1])]
        listed = {cp.id for cp in found[1].checkpoints}
        for cid, gone_after in self.checkpoints:
            if cid not in listed and (gone_after is None or self.now() < gone_after):
                self.fail("integrity", f"live checkpoint {cid} is missing from the manifest")
        for cp in found[1].checkpoints:
            try:
                manifests.append((f"checkpoint {cp.id}", ms.read(cp.manifest_id)))
            except ObjectNotFound:
                self.fail("integrity", f"checkpoint {cp.id} pins missing manifest {cp.manifest_id}")
        if self.db is not None and self.db.close_reason is None:
            manifests.append(("writer's view", self.db.manifest()))
        for label, m in manifests:
            views = list(m.l0) + [v for run in m.compacted for v in run.ssts]
            for v in views:
                path = ids.compacted_path(ROOT, v.sst.id)
                try:
                    self.mem.head(path)
                except ObjectNotFound:
                    self.fail("integrity", f"{label} manifest names missing SST {path}")

    # -- reopen, crash, fencing ---------------------------------------------------------------

    def recover(self, how: str, db: Db, *, close_raised: bool, faulty_close: bool) -> None:
        """Check what survived into the new writer and cut the model to it."""
        self.settle()  # replayed WAL rows are being flushed to L0 in the background
        last = db.metrics()["last_seq"]
        acked, committed = self.model.acked, self.model.committed
        if last < acked:
            self.fail(
                "lost-durable",
                f"after {how}: last_seq {last} < acknowledged durable seq {acked}; "
                "an acknowledged write was lost",
            )
        if last > committed:
            self.fail("phantom", f"after {how}: last_seq {last} > committed {committed}")
        if how == "reopen" and last < committed:
            msg = f"close() lost seqs {last + 1}..{committed} (committed, not acknowledged)"
            if not faulty_close:
                self.fail("close-lost", msg + " without faults")
            elif not close_raised:
                self.known_hit("close-unflushed", msg + " and returned without an error")
        lost = self.model.truncate(last)
        self.event(f"{how}: last_seq={last} (acked {acked}, committed {committed}, lost {lost})")
        self.check_all()

    def op_reopen(self, op: Op) -> None:
        if not self.wal and self.full.capacity is not None:
            if self.avoided("wal-off-outage", "reopen"):
                return
        if not self.wal and not self.l0_room("reopen"):
            # close() with the WAL off flushes the memtable to L0 and waits 60 s for room
            self.avoided("wal-off-close-l0-full", "reopen")
            return
        db = self.the_db()
        self.drop_snapshots()
        faulty = self.faulty
        raised = False
        flush = op.get("flush", "wal")  # close(flush=...): what close flushes first
        try:
            db.close(flush=flush)
        except ShaleError as exc:
            raised = True
            self.event(f"close raised {type(exc).__name__}")
        self.db = None
        self.end_windows()  # the next process starts with a healthy store
        self.db, self.db_handle = self.open_writer()
        # flush=None drops what is not durable: judged as a crash is (acknowledged writes kept)
        how = "reopen" if flush is not None else "reopen without a final flush"
        self.recover(how, self.db, close_raised=raised, faulty_close=faulty)

    def reap(self, db: Db) -> None:
        """Stop the threads of a writer whose store handle is cut (a dead process).

        ``close()`` does it, but with the WAL off and L0 full the L0 flusher can miss close's
        wake-up (it clears the event after close set it) and sleep a poll interval while
        close waits 60 s for it (issue 9 item 7); re-set the event (test-only) until it ends.
        """

        def close() -> None:
            try:
                db.close()
            except ShaleError:
                pass  # it may report what it could not flush: it is dead anyway

        closer = threading.Thread(target=close, name="shalesim-reaper", daemon=True)
        closer.start()
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while closer.is_alive():
            db._inner.flusher.wake()
            if time.monotonic() > deadline:
                self.fail("hang", "a crashed writer's threads did not stop")
            closer.join(0.002)

    def op_crash(self, op: Op) -> None:
        db = self.the_db()
        assert self.db_handle is not None
        self.drop_snapshots()
        self.db_handle.cut()  # from here on nothing of this writer reaches the store
        self.db = None
        self.reap(db)
        self.end_windows()
        self.db, self.db_handle = self.open_writer()
        self.recover("crash", self.db, close_raised=False, faulty_close=True)

    def op_fence(self, op: Op) -> None:
        old = self.the_db()
        old_handle = self.db_handle
        assert old_handle is not None
        self.drop_snapshots()
        self.db = None  # the old writer is on its own now
        new, handle = self.open_writer()
        k = op["key"].encode()
        m = old.metrics()
        if (
            not self.wal
            and self.full.capacity is not None
            and self.avoided("wal-off-outage", "fenced writer's durable put")
        ):
            old_handle.cut()  # its put and close() would wait out the full store; it dies
        elif (
            not self.wal
            and m["l0_sst_count"] + m["immutable_memtables"] + 1 > self.config["l0_max_ssts"]
        ):
            # WAL off: the durable put, and close(), would wait for L0 room that never comes
            # (issue 9 items 7 and 9): the old writer dies instead
            self.event("fenced writer not tried, it crashes: its L0 is full and the WAL is off")
            old_handle.cut()
        else:
            self.check_fenced_write(old, k)
        if old_handle.cut_done:
            self.reap(old)
        else:
            try:
                old.close()
            except ShaleError:
                pass
        self.db, self.db_handle = new, handle
        self.end_windows()
        self.recover("fence", new, close_raised=False, faulty_close=True)

    def check_fenced_write(self, old: Db, k: bytes) -> None:
        try:
            old.put(k, b"written-by-a-fenced-writer;", durable=True)
        except ClosedError as exc:
            if exc.reason != CloseReason.FENCED:
                self.fail("fencing", f"fenced writer's put closed with reason {exc.reason!r}")
        except UnavailableError as exc:
            if not self.faulty:
                self.fail("fencing", f"fenced writer's put raised {exc!r}, not ClosedError")
        else:
            self.fail("fencing", "a fenced writer acknowledged a durable write")

    # -- faults -------------------------------------------------------------------------------

    def op_faults(self, op: Op) -> None:
        rules = [FaultRule(**r) for r in op["rules"]]
        self.gate.arm(FaultyStore(self.full, rules, seed=op["seed"], sleep=lambda s: None))
        self.fault_left = op["n"] + 1  # this op counts down once right away

    def op_full(self, op: Op) -> None:
        self.full.capacity = self.full.used_bytes() + op["slack"]
        self.full.rejected = 0
        self.full_left = op["n"] + 1
