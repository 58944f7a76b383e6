"""Unit tests of :mod:`shale.engine.oracle`: what bound each kind of read gets (SlateDB's
``prepare_max_seq``), and durability only moving forward."""

from __future__ import annotations

import threading

import pytest

from shale.engine.oracle import DbOracle
from shale.errors import InvalidError


def test_read_bounds() -> None:
    o = DbOracle(5)
    o.durable_seq = 6
    o.committed_seq = 8
    o.last_seq = 9  # seq 9 assigned, its batch not in the memtable yet
    assert o.read_seq("memory", False) == 8  # committed writes
    assert o.read_seq("memory", True) == 9  # dirty: assigned ones too
    assert o.read_seq("remote", False) == 6  # durable writes only
    assert o.read_seq("remote", True) == 6
    with pytest.raises(InvalidError, match="durability"):
        o.read_seq("disk", False)


def test_durable_seq_only_grows_and_wakes_waiters() -> None:
    o = DbOracle()
    woke = threading.Event()

    def wait() -> None:
        with o.cond:
            o.cond.wait_for(lambda: o.durable_seq >= 3, timeout=10)
        woke.set()

    t = threading.Thread(target=wait)
    t.start()
    o.advance_durable(3)
    t.join(10)
    assert woke.is_set()
    o.advance_durable(2)
    assert o.durable_seq == 3
    o.reset(7)
    assert (o.last_seq, o.committed_seq, o.durable_seq) == (7, 7, 7)
