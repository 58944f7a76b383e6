"""The engine's components (private): what :class:`shale.db.Db` and the read-only view wire.

Each module is one concept with one owner of each lock, named after its SlateDB twin:

==================  ===========================================================================
``db_status``       open/closing/closed, reason, failure cause, background threads, retries
``oracle``          last assigned / committed / durable seq; durability waits (own condition)
``db_state``        active + frozen memtables, current manifest, immutable views (write lock)
``table_store``     SST open (metadata cache) / build / evict; WAL SST listing and reading
``snapshot_manager``  pinned seqs, the minimum pinned
``batch_write``     batch -> rows (TTL, merge pre-combine), commit, backpressure
``wal_buffer``      WAL buffer, group commit, upload, fence detection
``wal_replay``      the fence at open, WAL replay (writer and read-only)
``manifest_keeper`` the fenceable manifest: update, refresh, poll
``memtable_flusher``  the L0 flush thread, publishing into the manifest
``reader``          point lookups and iterator sources; ``db_iter``: the user iterator;
                    ``db_snapshot``: a snapshot
``db_inner``        a writer's components wired together: durability waits, flush, close
``builder``         resolved components -> an open writer, or a read-only view's parts
``memtable``        the memtable; ``components``: checks of user-given components
``transaction_manager``  live transactions, recent commits' write sets, conflict checks
==================  ===========================================================================

Lock order -- a thread holding a lock takes only locks further down this list:

1. ``WalBuffer._flush_mutex`` -- one WAL flush at a time; held across uploads.
2. ``ManifestKeeper._mutex`` -- one manifest update or refresh at a time; held across the
   manifest write, and a WAL flush never waits for it (so an L0 flush that holds it never
   waits behind a WAL upload).
3. ``DbState.lock`` (``DbState.cond``) -- *the write lock*: a write's commit (with a
   transaction's conflict check and the recording of its write set), a transaction's begin,
   freezes, installing a manifest; flush and backpressure waits.
4. ``WalBuffer._lock`` -- the buffer's fields; taken inside the write lock by the commit and
   by the WAL flush's buffer swap, so a freeze sees whole batches.
5. ``DbOracle.cond`` -- the durable seq and its waiters.
6. Leaves, never held while taking another: ``SnapshotManager._lock``, ``DbStatus._lock``,
   ``BatchWriter._segments_lock``, ``TransactionManager._lock``, ``Memtable._klock``, the
   caches' locks, ``Event``\\ s, ``shale.watch.WatchHub._lock`` (the commit and the WAL
   upload hand rows to watchers through ``BatchWriter.on_commit`` / ``WalBuffer.on_durable``
   under locks 3 / 1; the hub only queues them: user callbacks run on its delivery threads).

Why this order: uploads (1, 2) are slow and run without blocking writers, which need only 3
and 4 for a commit; a waiter blocks on exactly one condition (3 or 5), and what it reads of
other components (upload health, close state, L0 fullness) it reads without their locks, so a
waiter never holds two locks. Everything that can make a waiter's condition true notifies that
condition after releasing its own locks; failures and close notify all of them
(``DbStatus.wakers``). Readers take no lock while reading: views are immutable.

Layers: modules here import only lower layers (``meta``, ``objstore``, the format modules,
the base modules) and each other without cycles; never the API (:mod:`shale.db`,
:mod:`shale.reader`, :mod:`shale.aio`, :mod:`shale.plugins`). Plugins are resolved by the API
layer and handed in as objects; observers are told through callbacks it sets. The WAL writer
and the memtable flusher talk both ways through callbacks (``db_inner`` wires them), never
imports. Checked by import-linter (the root ``pyproject.toml``).
"""
