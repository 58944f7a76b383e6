"""Unit tests of :mod:`shale.engine.commit`: both twins commit the same writes into the same
memtable contents, sizes, seqs, WAL buffer and counters, and refuse the same writes without a
trace."""

from __future__ import annotations

import collections
import threading
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shale import _accel
from shale.batch import Ttl
from shale.clock import ManualClock, MonotonicClock, SystemClock
from shale.engine.db_state import DbState
from shale.engine.db_status import DbStatus
from shale.engine.oracle import DbOracle
from shale.engine.transaction_manager import TransactionManager
from shale.engine.wal_buffer import WalBuffer
from shale.errors import ClosedError, InvalidError
from shale.fbs.manifest import Manifest
from shale.merge_operators import ConcatMergeOperator
from shale.row import MERGE, TOMBSTONE, VALUE


def _wal(l0: int) -> WalBuffer:
    """A WAL buffer with only the fields the commit touches (no store, no flusher)."""
    wal = object.__new__(WalBuffer)
    wal.settings = collections.namedtuple("S", "l0_sst_size_bytes")(l0)  # type: ignore[assignment]
    wal._lock = threading.Lock()
    wal._rows = []
    wal.buffered_bytes = 0
    wal.queued_bytes = 0
    wal.wakeup = threading.Event()
    return wal


class Setup:
    def __init__(
        self, impl: ModuleType, *, clock: Any = None, wal: bool = True, l0: int = 1 << 20, **kw: Any
    ) -> None:
        self.state = DbState(Manifest.initial(), 0)
        self.oracle = DbOracle(10)
        self.status = DbStatus()
        self.wal = _wal(l0) if wal else None
        self.txns = TransactionManager()
        self.c = impl.Committer(
            self.state,
            self.oracle,
            self.status,
            self.wal,
            MonotonicClock(clock or ManualClock(1000)),
            self.txns,
            default_ttl=kw.get("default_ttl"),
            max_unflushed_bytes=1 << 30,
            l0_sst_size_bytes=l0,
            merge_operator=kw.get("merge_operator"),
            check_segments=None,
            backpressure=lambda: None,
            wait_durable=lambda seq, timeout: None,
        )

    def snapshot(self) -> tuple[Any, ...]:
        mt = self.state.memtable
        return (
            dict(mt._versions),
            list(mt._new),
            (mt.size, mt.mem_bytes, mt.num_rows, mt.min_seq, mt.max_seq, mt.last_tick),
            (self.oracle.last_seq, self.oracle.committed_seq),
            None if self.wal is None else (list(self.wal._rows), self.wal.buffered_bytes),
            (self.c.batch_count, self.c.op_count),
            len(self.state.imms),
        )


KEYS = st.sampled_from([b"a", b"b", b"c", b"dd"])
TTLS = st.none() | st.integers(1, 50) | st.sampled_from([Ttl.no_expiry(), Ttl.at(5)])
ONE = st.tuples(
    st.just("one"), KEYS, st.sampled_from([VALUE, TOMBSTONE, MERGE]), st.binary(max_size=3), TTLS
)
BATCH = st.tuples(
    st.just("batch"),
    st.dictionaries(
        KEYS,
        st.lists(
            st.tuples(
                st.sampled_from([VALUE, MERGE]),
                st.binary(max_size=3),
                st.none() | st.integers(1, 2),
            ),
            min_size=1,
            max_size=3,
        ),
        min_size=1,
    ),
)


def _run(s: Setup, writes: list[Any]) -> list[Any]:
    out: list[Any] = []
    for w in writes:
        try:
            if w[0] == "one":
                _, key, kind, value, ttl = w
                value = b"" if kind == TOMBSTONE else value
                h = s.c.write_one(key, kind, value, ttl, False)
            else:
                items = [
                    (k, [(kind, v, None if t is None else Ttl.after(t)) for kind, v, t in ops])
                    for k, ops in sorted(w[1].items())
                ]
                h = s.c.write(items, False)
            out.append((h.seq, h.create_ts))
        except InvalidError as exc:
            out.append(str(exc))
    return out


@given(
    writes=st.lists(ONE | BATCH, min_size=1, max_size=12), default_ttl=st.none() | st.integers(1, 9)
)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_twins_agree(both_twins: Any, writes: list[Any], default_ttl: int | None) -> None:
    got = []
    for impl in both_twins("commit"):
        s = Setup(impl, default_ttl=default_ttl, merge_operator=ConcatMergeOperator(), l0=40)
        got.append((_run(s, writes), s.snapshot(), s.wal is not None and s.wal.wakeup.is_set()))
    assert got[0] == got[1]


def test_wal_off_freezes_a_full_memtable(commit_impl: ModuleType) -> None:
    impl = commit_impl
    s = Setup(impl, wal=False, l0=30)
    s.c.write_one(b"k", VALUE, b"v" * 10, None, False)
    assert len(s.state.imms) == 1 and s.state.memtable.is_empty()
    assert s.snapshot()[3] == (11, 11)


def test_refused_writes_leave_no_trace(commit_impl: ModuleType) -> None:
    impl = commit_impl
    s = Setup(impl)
    before = s.snapshot()
    with pytest.raises(InvalidError):
        s.c.write_one(b"", VALUE, b"v", None, False)  # empty key
    with pytest.raises(InvalidError):
        s.c.write_one(b"k", VALUE, "v", None, False)  # not bytes
    with pytest.raises(InvalidError):
        s.c.write_one(b"k", VALUE, b"v", 0, False)  # bad ttl
    with pytest.raises(InvalidError):
        s.c.write_one(b"k", VALUE, b"v", None, 1)  # durable not a bool
    with pytest.raises(InvalidError):
        s.c.write_one(b"k", MERGE, b"v", None, False)  # no merge operator
    with pytest.raises(InvalidError):
        s.c.write([(b"k", [(VALUE, b"v", None)])], "yes")
    assert s.snapshot() == before
    s.status.closed = True
    with pytest.raises(ClosedError):
        s.c.write_one(b"k", VALUE, b"v", None, False)
    assert s.snapshot() == before


def test_handle_clock_hooks_and_transactions(commit_impl: ModuleType) -> None:
    impl = commit_impl
    s = Setup(impl, clock=SystemClock())
    seen: list[Any] = []
    s.c.on_commit = seen.append
    s.txns.begin("t", s.oracle.committed_seq)
    h = s.c.write_one(bytearray(b"k"), VALUE, memoryview(b"v"), 5, False)
    assert (h.seq, repr(h)) == (11, f"WriteHandle(seq=11, create_ts={h.create_ts})")
    assert isinstance(h, impl.WriteHandle) and h.create_ts > 1_600_000_000_000
    h2 = s.c.write([(b"x", [(VALUE, b"1", None)]), (b"y", [(TOMBSTONE, b"", None)])], False)
    assert h2.seq == 12 and h2.create_ts >= h.create_ts
    assert seen == [
        [(b"k", 11, VALUE, b"v", h.create_ts + 5, h.create_ts)],
        [
            (b"x", 12, VALUE, b"1", None, h2.create_ts),
            (b"y", 12, TOMBSTONE, b"", None, h2.create_ts),
        ],
    ]
    assert s.txns.counts()[1] >= 1  # the write sets were recorded for the live transaction
    h.wait_durable(0.5)  # the wait passed in: returns at once here


#: a WriteBatch's ops: (method, key, value, ttl)
WB = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete", "merge"]),
        KEYS,
        st.binary(max_size=3),
        st.none() | st.integers(1, 2) | st.just(Ttl.no_expiry()),
    ),
    min_size=1,
    max_size=8,
)


def _run_batches(s: Setup, batch_mod: ModuleType, batches: list[Any]) -> list[Any]:
    out: list[Any] = []
    for ops in batches:
        wb = batch_mod.WriteBatch()
        for method, key, value, ttl in ops:
            if method == "delete":
                wb.delete(key)
            else:
                getattr(wb, method)(key, value, ttl=ttl)
        try:
            h = s.c.write_batch(wb, False)
            out.append((h.seq, h.create_ts))
        except InvalidError as exc:
            out.append(str(exc))
    return out


@given(batches=st.lists(WB, min_size=1, max_size=8), default_ttl=st.none() | st.integers(1, 9))
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_write_batch_twins_agree(
    both_twins: Any, batches: list[Any], default_ttl: int | None
) -> None:
    """Every commit twin with every WriteBatch twin commits what the references commit (the
    compiled pair reads the compiled batch's ops as held, without items())."""
    got = []
    commits = both_twins("commit")
    for batch_mod in both_twins("batch"):
        for impl in commits:
            s = Setup(impl, default_ttl=default_ttl, merge_operator=ConcatMergeOperator(), l0=40)
            got.append((_run_batches(s, batch_mod, batches), s.snapshot()))
    assert all(g == got[0] for g in got)


def test_write_batch_without_merge_operator(commit_impl: ModuleType) -> None:
    for batch_mod in _accel.twins("batch").values():
        s = Setup(commit_impl)
        wb = batch_mod.WriteBatch().put(b"a", b"1").merge(b"b", b"x")
        before = s.snapshot()
        with pytest.raises(InvalidError, match="merge operator missing"):
            s.c.write_batch(wb, False)
        assert s.snapshot() == before
        with pytest.raises(InvalidError, match="durable"):
            s.c.write_batch(batch_mod.WriteBatch().put(b"a", b"1"), 1)
        assert s.c.write_batch(batch_mod.WriteBatch().put(b"a", b"1"), False).seq == 11
