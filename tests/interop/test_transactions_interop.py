"""Transactions interop: the official ``slatedb`` package reads what shale's transactions
committed (one batch per commit: one seq for all its rows), and nothing of a transaction that
conflicted or rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shale import TransactionError
from shale.db import Db
from shale.settings import Settings

SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
    merge_operator="concat",
)


@pytest.mark.parametrize("flush_memtable", [False, True])
def test_official_reads_transaction_commits(
    tmp_path: Path, official_reader: Any, flush_memtable: bool
) -> None:
    store_dir = tmp_path / "store"
    with Db.open(str(store_dir / "db"), SETTINGS) as db:
        for i in range(5):
            db.put(b"acct/%d" % i, b"100")
        with db.begin("serializable") as txn:
            src = int(txn.get(b"acct/0") or b"0")
            dst = int(txn.get(b"acct/1") or b"0")
            txn.put(b"acct/0", b"%d" % (src - 30))
            txn.put(b"acct/1", b"%d" % (dst + 30))
            txn.merge(b"log", b"t1;")
            txn.delete(b"acct/4")
        loser = db.begin("serializable")
        assert list(loser.scan_prefix(b"acct/")) != []
        loser.put(b"loser", b"never")
        db.put(b"acct/2", b"99")  # inside the loser's scanned range
        with pytest.raises(TransactionError):
            loser.commit()
        rolled = db.begin()
        rolled.put(b"rolled", b"never")
        rolled.rollback()
        assert db.put_if_absent(b"once", b"1") and not db.put_if_absent(b"once", b"2")
        assert db.compare_and_set(b"acct/3", b"100", b"101")
        db.update(b"log", lambda v: (v or b"") + b"u;")
        keys = [*sorted(k for k, _v in db.scan()), b"acct/4", b"loser", b"rolled"]
        mine = {k: db.get_key_value(k) for k in keys}
        if flush_memtable:
            db.flush(memtable=True)
    official = official_reader.read(store_dir, keys, merge_operator="concat")
    want = {k: (None if kv is None else kv.value) for k, kv in mine.items()}
    assert official.values == want
    assert want[b"acct/0"] == b"70" and want[b"acct/1"] == b"130"
    assert want[b"acct/4"] is None and want[b"loser"] is None and want[b"rolled"] is None
    assert want[b"log"] == b"t1;u;" and want[b"once"] == b"1" and want[b"acct/3"] == b"101"
    # one commit, one seq: the official package sees the transfer's rows at the same seq
    assert official.key_values[b"acct/0"][0] == official.key_values[b"acct/1"][0]
    assert official.key_values[b"acct/0"][0] == mine[b"acct/0"].seq  # type: ignore[union-attr]
    assert official.scan == [(k, v) for k, v in want.items() if v is not None]
