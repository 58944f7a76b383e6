"""Transactions against a model: several interleaved transactions and plain writes; the model
decides which commits must abort (SlateDB's rules) and what every read must return.

The model keeps the committed data, a log of commits (a counter standing for the seq, and
the keys each wrote), and per live transaction its snapshot, its own writes, and what it read.
A commit conflicts when a commit after its start wrote a key it writes (both levels) or, under
``serializable``, a key it read or a key inside a range it scanned; a transaction that wrote
nothing never aborts. The classic anomalies are spelled out as tests at the bottom.
"""

from __future__ import annotations

import pathlib
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from shale import TransactionError
from shale.db import Db
from shale.settings import Settings
from shale.transaction import Transaction

FAST = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e"])
BOUNDS = st.one_of(st.none(), st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"]))
VALUES = st.binary(min_size=0, max_size=3)
ISOLATION = st.sampled_from(["snapshot", "serializable"])


@dataclass
class ModelTxn:
    real: Transaction
    serializable: bool
    start: int
    snapshot: dict[bytes, bytes]
    own: dict[bytes, bytes | None] = field(default_factory=dict)
    write_keys: set[bytes] = field(default_factory=set)
    read_keys: set[bytes] = field(default_factory=set)
    read_ranges: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)

    def view(self) -> dict[bytes, bytes]:
        out = dict(self.snapshot)
        for k, v in self.own.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
        return out


def _in(k: bytes, start: bytes | None, end: bytes | None) -> bool:
    return (start is None or k >= start) and (end is None or k < end)


class TransactionsMachine(RuleBasedStateMachine):
    txns = Bundle("txns")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.db = Db.open(str(pathlib.Path(self.tmp.name) / "db"), FAST)
        self.data: dict[bytes, bytes] = {}
        self.log: list[tuple[int, frozenset[bytes]]] = []
        self.seq = 0
        self.live: list[ModelTxn] = []
        self.aborted = 0

    def teardown(self) -> None:
        for t in self.live:
            t.real.rollback()
        self.db.close()
        self.tmp.cleanup()

    def _commit_model(self, keys: set[bytes], writes: dict[bytes, bytes | None]) -> None:
        self.seq += 1
        self.log.append((self.seq, frozenset(keys)))
        for k, v in writes.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v

    @rule(target=txns, isolation=ISOLATION)
    def begin(self, isolation: str) -> ModelTxn:
        real = self.db.begin(isolation)  # type: ignore[arg-type]
        t = ModelTxn(real, isolation == "serializable", self.seq, dict(self.data))
        self.live.append(t)
        return t

    @precondition(lambda self: len(self.live) < 6)
    @rule(key=KEYS, value=st.one_of(st.none(), VALUES))
    def plain_write(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.db.delete(key, durable=False)
        else:
            self.db.put(key, value, durable=False)
        self._commit_model({key}, {key: value})

    @rule(t=txns, key=KEYS)
    def get(self, t: ModelTxn, key: bytes) -> None:
        if t.real.finished:
            return
        assert t.real.get(key) == t.view().get(key)
        if t.serializable:
            t.read_keys.add(key)

    @rule(t=txns, start=BOUNDS, end=BOUNDS, reverse=st.booleans())
    def scan(self, t: ModelTxn, start: bytes | None, end: bytes | None, reverse: bool) -> None:
        if t.real.finished or (start is not None and end is not None and start > end):
            return
        want = sorted((k, v) for k, v in t.view().items() if _in(k, start, end))
        if reverse:
            want.reverse()
        assert list(t.real.scan(start, end, reverse=reverse)) == want
        if t.serializable:
            t.read_ranges.append((start, end))

    @rule(t=txns, key=KEYS, value=st.one_of(st.none(), VALUES))
    def write(self, t: ModelTxn, key: bytes, value: bytes | None) -> None:
        if t.real.finished:
            return
        if value is None:
            t.real.delete(key)
        else:
            t.real.put(key, value)
        t.own[key] = value
        t.write_keys.add(key)

    @rule(t=txns, key=KEYS)
    def mark_read(self, t: ModelTxn, key: bytes) -> None:
        if t.real.finished:
            return
        t.real.mark_read([key])
        if t.serializable:
            t.read_keys.add(key)

    @rule(t=txns, key=KEYS)
    def unmark_write(self, t: ModelTxn, key: bytes) -> None:
        if t.real.finished:
            return
        t.real.unmark_write([key])
        t.write_keys.discard(key)

    def _conflicts(self, t: ModelTxn) -> bool:
        if not t.own:
            return False  # wrote nothing: never aborts
        for seq, keys in self.log:
            if seq <= t.start:
                continue
            if keys & t.write_keys:
                return True
            if t.serializable and (
                keys & t.read_keys or any(_in(k, s, e) for k in keys for s, e in t.read_ranges)
            ):
                return True
        return False

    @rule(t=consumes(txns))
    def commit(self, t: ModelTxn) -> None:
        if t.real.finished:
            return
        self.live.remove(t)
        if self._conflicts(t):
            with pytest.raises(TransactionError):
                t.real.commit(durable=False)
            self.aborted += 1
            return
        handle = t.real.commit(durable=False)
        if not t.own:
            assert handle is None
            return
        assert handle is not None
        self._commit_model(t.write_keys, t.own)

    @rule(t=consumes(txns))
    def rollback(self, t: ModelTxn) -> None:
        if t.real.finished:
            return
        self.live.remove(t)
        t.real.rollback()

    @invariant()
    def committed_state_matches(self) -> None:
        assert dict(self.db.scan()) == self.data

    @invariant()
    def tracker_knows_the_live_transactions(self) -> None:
        live, recorded = self.db._inner.writer.txns.counts()
        assert live == len(self.live)
        if not self.live:
            assert recorded == 0
        else:
            oldest = min(t.start for t in self.live)
            # only commits some live transaction cannot see are kept
            assert recorded == sum(1 for seq, _ in self.log if seq > oldest)


TransactionsMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_transactions_model = TransactionsMachine.TestCase


# -- the classic anomalies ----------------------------------------------------------------


@pytest.fixture
def db(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    d = Db.open(str(tmp_path / "db"), FAST)
    yield d
    d.close()


@pytest.mark.parametrize("isolation", ["snapshot", "serializable"])
def test_lost_update_aborts(db: Db, isolation: str) -> None:
    db.put(b"n", b"0")
    t1, t2 = db.begin(isolation), db.begin(isolation)  # type: ignore[arg-type]
    for t in (t1, t2):
        t.put(b"n", b"%d" % (int(t.get(b"n") or b"0") + 1))
    t1.commit()
    with pytest.raises(TransactionError):
        t2.commit()
    assert db.get(b"n") == b"1"


def test_write_skew_aborts_under_serializable(db: Db) -> None:
    db.put(b"oncall/alice", b"1")
    db.put(b"oncall/bob", b"1")
    t1, t2 = db.begin("serializable"), db.begin("serializable")
    for t, me in ((t1, b"oncall/alice"), (t2, b"oncall/bob")):
        if sum(int(v) for _k, v in t.scan_prefix(b"oncall/")) >= 2:
            t.put(me, b"0")
    t1.commit()
    with pytest.raises(TransactionError):
        t2.commit()
    assert sum(int(v) for _k, v in db.scan_prefix(b"oncall/")) == 1


def test_phantom_aborts_under_serializable(db: Db) -> None:
    t1, t2 = db.begin("serializable"), db.begin("serializable")
    # each inserts a row if the range is empty: serially, only one could
    for t, key in ((t1, b"slot/1"), (t2, b"slot/2")):
        if not list(t.scan_prefix(b"slot/")):
            t.put(key, b"taken")
    t1.commit()
    with pytest.raises(TransactionError):
        t2.commit()
    assert [k for k, _v in db.scan_prefix(b"slot/")] == [b"slot/1"]
