"""An L0 flush publishes its SST and retires the frozen memtable in one step: a read between
the manifest install and the memtable's removal from the queue must not see the rows twice
(a merge operand counted twice -- found by the simulation, seed 103 of the pure twins)."""

from __future__ import annotations

from typing import Any

from shale import Db, Settings
from shale.merge_operators import ConcatMergeOperator
from shale.objstore.memory import MemoryStore


def _open(store: MemoryStore) -> Db:
    settings = Settings(compactor_options=None, garbage_collector_options=None)
    return Db.open("db", settings, object_store=store, merge_operator=ConcatMergeOperator())


def test_reads_inside_the_l0_flush_window_see_each_row_once() -> None:
    store = MemoryStore()
    with _open(store) as db:
        db.put(b"k", b"base;")
        db.put(b"p", b"plain")
        db.flush(memtable=True)  # the base in an older L0
        db.merge(b"k", b"x;")
        db.merge(b"m", b"only;")  # an operand with no base anywhere
        flusher = db._inner.flusher
        before = flusher.on_l0_flushed
        seen: list[Any] = []

        def observe(manifest: Any) -> None:
            # the new L0 is installed; the frozen memtable has not been popped yet
            seen.append(
                (
                    db.get(b"k"),
                    db.get(b"m"),
                    dict(db.scan()),
                    dict(db.scan(reverse=True)),
                    db.get_key_value(b"k").seq,  # type: ignore[union-attr]
                )
            )
            if before is not None:
                before(manifest)

        flusher.on_l0_flushed = observe
        db.flush(memtable=True)
        flusher.on_l0_flushed = before
        assert seen, "the observer ran inside the flush"
        expected = {b"k": b"base;x;", b"m": b"only;", b"p": b"plain"}
        for get_k, get_m, fwd, rev, _seq in seen:
            assert get_k == b"base;x;"
            assert get_m == b"only;"
            assert fwd == expected and rev == expected
        assert db.get(b"k") == b"base;x;" and dict(db.scan()) == expected
