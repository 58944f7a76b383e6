"""The pluggy plugin of shale_gc, registered through the ``shale`` entry-point group.

- ``shale_addhooks`` adds :mod:`shale_gc.hookspecs` (``shale_gc_filter``,
  ``shale_gc_finished``).
- ``shale_db_opened`` starts an in-process garbage collector on a daemon thread when the
  database's ``settings.garbage_collector_options`` is set and collects at least one
  directory (SlateDB runs its GC inside the ``Db`` by default too); its first round comes one
  interval after opening. ``shale_db_closed`` stops it and waits for the thread. The
  collector uses the database's store, root, clock and manifest format version.
- ``shale_cli`` adds ``shale gc run`` (:mod:`shale_gc.cli`).
- ``shale_admin_run_gc_once`` answers :meth:`shale.Admin.run_gc_once`: one round of a
  collector on the Admin's store, root, clock and manifest settings.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import pluggy

import shale
from shale.spi import get_logger
from shale_gc import hookspecs

if TYPE_CHECKING:  # imported on first use: every shale process loads the plugin
    from shale_gc.collector import GarbageCollector

__all__ = [
    "STOP_TIMEOUT_S",
    "attached_gc",
    "shale_addhooks",
    "shale_admin_run_gc_once",
    "shale_cli",
    "shale_db_closed",
    "shale_db_opened",
]

logger = get_logger(__name__)

#: How long ``shale_db_closed`` waits for a GC round in progress to notice the stop.
STOP_TIMEOUT_S = 60.0

_lock = threading.Lock()
# id(db) -> (weak reference to the db, collector, stop event, thread). The db is held weakly so
# that a database dropped without close() can be collected (it is closed then, which removes
# the entry: an id is not reused while its entry exists).
_attached: dict[
    int, tuple[weakref.ref[Any], GarbageCollector, threading.Event, threading.Thread]
] = {}


@shale.hookimpl
def shale_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Register ``shale_gc_filter`` and ``shale_gc_finished``."""
    names = ("shale_gc_filter", "shale_gc_finished")
    callers = [getattr(pluginmanager.hook, n, None) for n in names]
    if not all(hc is not None and hc.has_spec() for hc in callers):
        pluginmanager.add_hookspecs(hookspecs)


def attached_gc(db: Any) -> GarbageCollector | None:
    """The in-process collector running for ``db``, if any."""
    with _lock:
        entry = _attached.get(id(db))
    return None if entry is None or entry[0]() is not db else entry[1]


@shale.hookimpl
def shale_db_opened(db: Any) -> None:
    """Start the in-process garbage collector of ``db`` if its settings ask for one."""
    options = db.settings.garbage_collector_options
    if options is None or options.is_empty:
        return
    from shale_gc.collector import GarbageCollector

    gc = GarbageCollector(
        db.store,
        db.root,
        options,
        wal_store=getattr(db, "wal_store", None),
        clock=db.clock,
        manifest_format_version=db.settings.manifest_format_version,
        manifest_update_timeout=db.settings.manifest_update_timeout,
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=gc.run,
        args=(stop,),
        kwargs={"start_immediately": False},
        name="shale-gc",
        daemon=True,
    )
    with _lock:
        if id(db) in _attached:
            return
        _attached[id(db)] = (weakref.ref(db), gc, stop, thread)
    thread.start()
    logger.info("started in-process garbage collector url=%s", getattr(db, "url", db.root))


@shale.hookimpl
def shale_db_closed(db: Any, reason: str) -> None:
    """Stop ``db``'s in-process garbage collector and wait for its thread."""
    with _lock:
        entry = _attached.get(id(db))
        if entry is None or entry[0]() not in (db, None):
            return
        del _attached[id(db)]
    _, gc, stop, thread = entry
    stop.set()
    if thread is not threading.current_thread():
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("the garbage collector thread did not stop within %.0fs", STOP_TIMEOUT_S)
        else:
            gc.close()
    logger.info("stopped in-process garbage collector reason=%s", reason)


@shale.hookimpl
def shale_cli(subparsers: Any) -> None:
    """Add ``shale gc run``."""
    from shale_gc.cli import add_commands

    add_commands(subparsers)


@shale.hookimpl
def shale_admin_run_gc_once(admin: Any, options: Any) -> Any:
    """Run one collection round for :meth:`shale.Admin.run_gc_once`; return its report."""
    from shale_gc.collector import GarbageCollector

    gc = GarbageCollector(
        admin.store,
        admin.root,
        options,
        wal_store=getattr(admin, "wal_store", None),
        clock=admin.clock,
        manifest_format_version=admin.settings.manifest_format_version,
        manifest_update_timeout=admin.settings.manifest_update_timeout,
    )
    try:
        return gc.run_once()
    finally:
        gc.close()
