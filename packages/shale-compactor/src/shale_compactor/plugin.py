"""The pluggy plugin of shale_compactor, registered through the ``shale`` entry-point group.

- ``shale_addhooks`` declares the compactor's hooks (:mod:`shale_compactor.hookspecs`).
- ``shale_db_opened`` starts an in-process :class:`~shale_compactor.Compactor` on a daemon
  thread when ``db.settings.compactor_options`` is not ``None`` (SlateDB's embedded compactor;
  on by default). It uses the database's store, root, settings, merge operator, filter
  policies, block transformer and clock -- configuration the SST files depend on -- and shares
  no cache, lock or thread with the database: it talks to it only through the manifest, like a
  standalone compactor would.
- ``shale_l0_flushed`` wakes it when the writer's memtable flusher publishes L0 SSTs, so a
  compaction is scheduled as soon as it is due (event-driven; the poll remains the fallback,
  and a standalone compactor only polls).
- ``shale_db_closed`` stops it (running jobs are interrupted and resume on the next start).
- ``shale_cli`` adds ``shale compactor run|submit|status`` (:mod:`shale_compactor.cli`).
- ``shale_admin_submit_compaction`` answers :meth:`shale.Admin.submit_compaction`: the spec is
  validated by the scheduler a plugin offers (else the size-tiered one) and added to the
  ``.compactions`` file without fencing the running compactor.

Invariants: a failure of the embedded compactor is logged and never closes the database (it is
only no longer compacted). Fencing is per role: a second compactor of the same database
(standalone, or embedded in another ``Db``) fences this one, which then just stops; the writer
is not affected.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import pluggy

import shale
from shale.spi import get_logger
from shale_compactor.hookspecs import ensure_hookspecs

log = get_logger(__name__)

_lock = threading.Lock()
#: Embedded compactors by ``id(db)``: (weak reference to the db, compactor, thread). The db is
#: held weakly so that a database dropped without close() can be collected (and closed then).
_embedded: dict[int, tuple[weakref.ref[Any], Any, threading.Thread]] = {}

#: Seconds ``shale_db_closed`` waits for the embedded compactor to stop.
STOP_TIMEOUT_S = 60.0


@shale.hookimpl
def shale_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    ensure_hookspecs(pluginmanager)


def _run(compactor: Any) -> None:
    try:
        compactor.run()
    except Exception:  # never let the embedded compactor take the process down
        log.exception("embedded compactor failed; the database is no longer compacted")


@shale.hookimpl
def shale_db_opened(db: Any) -> None:
    options = getattr(db.settings, "compactor_options", None)
    if options is None:
        return
    from shale_compactor.compactor import Compactor

    compactor = Compactor(
        db.store,
        db.root,
        db.settings,
        merge_operator=db.merge_operator,
        options=options,
        filter_policies=db.filter_policies,
        transformer=db.transformer,
        clock=db.clock,
    )
    thread = threading.Thread(target=_run, args=(compactor,), name="shale-compactor", daemon=True)
    with _lock:
        _embedded[id(db)] = (weakref.ref(db), compactor, thread)
    thread.start()
    log.info("embedded compactor started for %r", db)


@shale.hookimpl
def shale_l0_flushed(db: Any, manifest: Any) -> None:
    """The writer published new L0 SSTs: wake its embedded compactor (if any) so that a
    compaction that just became due is scheduled now, not at the next ``poll_interval``."""
    compactor = embedded_compactor(db)
    if compactor is not None:
        compactor.wake()


@shale.hookimpl
def shale_db_closed(db: Any, reason: str) -> None:
    with _lock:
        entry = _embedded.get(id(db))
        # a dead reference is this db's own, being collected (an id is reused only after close)
        if entry is None or entry[0]() not in (db, None):
            return
        del _embedded[id(db)]
    _, compactor, thread = entry
    compactor.stop(timeout=STOP_TIMEOUT_S)
    if thread is not threading.current_thread():
        thread.join(STOP_TIMEOUT_S)
    log.info("embedded compactor stopped for %r (database closed: %s)", db, reason)


def embedded_compactor(db: Any) -> Any:
    """The :class:`~shale_compactor.Compactor` running inside ``db``, or ``None``."""
    with _lock:
        entry = _embedded.get(id(db))
    return entry[1] if entry is not None and entry[0]() is db else None


@shale.hookimpl
def shale_cli(subparsers: Any) -> None:
    from shale_compactor.cli import add_commands

    add_commands(subparsers)


@shale.hookimpl
def shale_admin_submit_compaction(admin: Any, spec: Any) -> Any:
    """Submit ``spec`` for :meth:`shale.Admin.submit_compaction`; return the compaction as the
    ``.compactions`` file holds it."""
    from shale.spi import InvalidError, get_host
    from shale_compactor.compactor import submit_compaction
    from shale_compactor.hooks import CompactorHooks
    from shale_compactor.scheduler import CompactionSpec, SizeTieredScheduler, parse_spec

    if isinstance(spec, str | dict):
        spec = parse_spec(spec)
    elif not isinstance(spec, CompactionSpec):
        raise InvalidError(
            'a compaction spec is a CompactionSpec, its JSON text or dict, or "full"',
            type=type(spec).__name__,
        )
    options = admin.settings.compactor_options
    scheduler = CompactorHooks(get_host().manager).compaction_scheduler(options)
    if scheduler is None:
        scheduler = SizeTieredScheduler(options)
    fmt = 1 if admin.settings.manifest_format_version == 1 else 2
    cid = submit_compaction(
        admin.store, admin.root, spec, scheduler=scheduler, clock=admin.clock, format_version=fmt
    )
    return admin.read_compaction(cid)
