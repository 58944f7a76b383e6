"""A compaction output's upload queue (``shale_compactor.outputs``) and the read-ahead window
sizes of its sources (``shale_compactor.sources.window_bytes``)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.settings import Settings
from shale_compactor import outputs
from shale_compactor.executor import CompactionExecutor
from shale_compactor.outputs import Output
from shale_compactor.sources import (
    BLOCKS_PER_FETCH,
    LOCAL_WINDOW_BUDGET,
    LOCAL_WINDOW_MAX,
    window_bytes,
)


class _GatedWriter:
    """A streamed object whose writes wait for ``gate``; records what was written."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.written: list[bytes] = []
        self.committed = False

    def write_parts(self, parts: list[bytes]) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        self.written += parts

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        pass


class _GatedStore(MemoryStore):
    """A memory store that streams objects through a :class:`_GatedWriter`."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writers: list[_GatedWriter] = []

    def open_writer(self, key: str, *, sync_every: int = 0) -> _GatedWriter:
        writer = _GatedWriter(self.gate)
        self.writers.append(writer)
        return writer


def test_feed_waits_while_the_upload_queue_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the disk slower than the merge, ``feed`` blocks once more than
    ``MAX_QUEUED_BYTES`` wait for the upload thread (the pieces do not pile up in memory);
    opening the gate writes every piece in order and ``commit`` publishes them."""
    monkeypatch.setattr(outputs, "MAX_QUEUED_BYTES", 3000)
    store = _GatedStore()
    executor = CompactionExecutor(store, "db", settings=Settings())
    fed: list[int] = []
    pieces = [bytes([i]) * 1000 for i in range(10)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        out = Output(executor, pool)

        def feeder() -> None:
            for i, piece in enumerate(pieces):
                out.feed([piece])
                fed.append(i)

        thread = threading.Thread(target=feeder, daemon=True)
        thread.start()
        thread.join(0.5)
        # blocked: one piece taken by the (gated) upload thread, three queued behind it
        assert thread.is_alive()
        assert len(fed) <= 4
        store.gate.set()
        thread.join(30)
        assert not thread.is_alive()
        out.commit(None)
    (writer,) = store.writers
    assert writer.written == pieces
    assert writer.committed
    assert fed == list(range(10))


def test_a_failed_write_is_raised_by_the_next_feed_or_commit() -> None:
    """An upload error is kept and raised by the caller's next call, queued or not."""

    class Failing(_GatedWriter):
        def write_parts(self, parts: list[bytes]) -> None:
            raise OSError("disk full")

    class Store(_GatedStore):
        def open_writer(self, key: str, *, sync_every: int = 0) -> _GatedWriter:
            return Failing(self.gate)

    executor = CompactionExecutor(Store(), "db", settings=Settings())
    with ThreadPoolExecutor(max_workers=1) as pool:
        out = Output(executor, pool)
        out.feed([b"x" * 10])
        with pytest.raises(OSError, match="disk full"):
            out.commit(None)


def test_window_bytes(tmp_path: Any) -> None:
    """A remote store reads SlateDB's ``blocks_to_fetch`` blocks per window; a local one
    larger windows, all sources of a merge within the budget, never below the remote size."""
    base = BLOCKS_PER_FETCH * 4096
    assert window_bytes(MemoryStore(), 4096, 8) == base
    local = LocalStore(str(tmp_path))
    assert window_bytes(local, 4096, 1) == LOCAL_WINDOW_MAX
    assert window_bytes(local, 4096, 8) == min(LOCAL_WINDOW_MAX, LOCAL_WINDOW_BUDGET // 8)
    assert window_bytes(local, 4096, 1000) == base
    assert window_bytes(local, 64 * 1024, 8) == max(64 * 1024 * BLOCKS_PER_FETCH, 4 << 20)
