"""The WAL at open (SlateDB's ``wal_replay`` and the fence of ``db.rs``): fence older writers
with an empty WAL object, then replay the WAL SSTs the manifest does not cover into memtables.

Invariants: the fence is created with put-if-absent at the first WAL id above every id the
manifest or the store knows, so an older writer's next WAL upload collides with it; a
collision means another writer raced us (the manifest refresh then says whether it fenced us).
Replayed rows above ``last_l0_seq`` are durable already and are queued for L0 as frozen
memtables of at most ``l0_sst_size_bytes``, each knowing the last WAL id it covers.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from shale import ids
from shale.engine.db_state import DbState
from shale.engine.memtable import Memtable
from shale.engine.table_store import TableStore
from shale.fbs.manifest import Manifest
from shale.objstore import ObjectAlreadyExists, ObjectNotFound

log = logging.getLogger(__name__)


def fence_wal(tables: TableStore, m: Manifest, refresh: Callable[[], object]) -> int:
    """Create the empty fence object at the next free WAL id; return that id.

    :param refresh: re-reads the manifest; raises ``ClosedError`` once a newer writer fenced
        this one.
    """
    listed = [i for i in tables.list_wal_ids() if i > m.replay_after_wal_id]
    candidate = max([m.replay_after_wal_id, m.wal_id_last_seen, *listed]) + 1
    while True:
        try:
            tables.wal_store.put_if_absent(ids.wal_path(tables.root, candidate), b"")
            return candidate
        except ObjectAlreadyExists:
            refresh()  # raises if a newer writer fenced us meanwhile
            candidate += 1


def _fetched(tables: TableStore, wal_ids: list[int]) -> Iterator[tuple[int, bytes]]:
    """Each WAL id with its stored bytes, in id order; the next object is fetched on a thread
    of its own while the caller decodes this one (the store's read releases the GIL)."""
    if len(wal_ids) < 2:
        for wal_id in wal_ids:
            yield wal_id, tables.fetch_wal(wal_id)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shale-wal-replay") as pool:
        ahead = pool.submit(tables.fetch_wal, wal_ids[0])
        for i, wal_id in enumerate(wal_ids):
            data = ahead.result()
            if i + 1 < len(wal_ids):
                ahead = pool.submit(tables.fetch_wal, wal_ids[i + 1])
            yield wal_id, data
            del data


def replay_wal(
    tables: TableStore,
    m: Manifest,
    fence_id: int,
    state: DbState,
    stats: collections.Counter[str],
) -> int:
    """Replay the WAL SSTs between ``m``'s ``replay_after_wal_id`` and the fence into
    ``state``'s queue of frozen memtables; the last seq replayed (or ``m.last_l0_seq``).

    Each WAL SST's blocks go into the memtable as decoded (rows at or below ``last_l0_seq``,
    already in L0, are skipped there), and the memtable is frozen between WAL SSTs only, so
    each frozen one knows the last WAL id holding its rows.
    """
    replay = [i for i in tables.list_wal_ids() if m.replay_after_wal_id < i < fence_id]
    last_seq = m.last_l0_seq
    floor = m.last_l0_seq
    limit = tables.settings.l0_sst_size_bytes
    mt = Memtable()
    replayed = 0
    for wal_id, data in _fetched(tables, replay):
        blocks = tables.decode_wal(data)
        del data
        if blocks is None:
            continue  # a fence object
        for rows in blocks:
            replayed += mt.put_rows(rows, floor)
        del blocks
        last_seq = max(last_seq, mt.max_seq)
        if mt.size >= limit:
            state.push_imm(mt.freeze(wal_id))
            mt = Memtable()
    if not mt.is_empty():
        # replayed rows are durable already: queue them for L0 like any frozen memtable
        state.push_imm(mt.freeze(replay[-1] if replay else None))
    if replayed:
        log.info("replayed %d rows from %d WAL SSTs", replayed, len(replay))
        stats["wal_replayed_rows"] += replayed
    return last_seq


def read_wals(
    tables: TableStore, m: Manifest, upper: int | None
) -> tuple[dict[int, list[tuple]], list[int]]:  # type: ignore[type-arg]
    """The rows of each WAL SST after ``m``'s ``replay_after_wal_id`` (up to ``upper``), and
    the ids listed but gone by the time they were read (a read-only open's replay)."""
    wal_ids = [
        i
        for i in tables.list_wal_ids()
        if i > m.replay_after_wal_id and (upper is None or i <= upper)
    ]
    out: dict[int, list[tuple]] = {}  # type: ignore[type-arg]
    missing = []
    for wal_id in wal_ids:
        try:
            rows = tables.read_wal(wal_id)
        except ObjectNotFound:
            missing.append(wal_id)
            continue
        if rows is not None:  # (an empty one is a fence object)
            out[wal_id] = rows
    return out, missing
