"""The pluggy plugin of shale_compactor, registered through the ``shale`` entry-point group.

- ``shale_addhooks`` declares the compactor's hooks (:mod:`shale_compactor.hookspecs`).
- ``shale_db_opened`` starts an in-process :class:`~shale_compactor.Compactor` on a daemon
  thread when ``db.settings.compactor_options`` is not ``None`` (SlateDB's embedded compactor;
  on by default). It uses the database's store, root, settings, merge operator, filter
  policies, block transformer and clock -- configuration the SST files depend on -- and shares
  no cache, lock or thread with the database: it talks to it only through the manifest, like a
  standalone compactor would.
- ``shale_db_closed`` stops it (running jobs are interrupted and resume on the next start).
- ``shale_cli`` adds ``shale compactor run|submit|status`` (:mod:`shale_compactor.cli`).

Invariants: a failure of the embedded compactor is logged and never closes the database (it is
only no longer compacted). Fencing is per role: a second compactor of the same database
(standalone, or embedded in another ``Db``) fences this one, which then just stops; the writer
is not affected.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

import pluggy

import shale
from shale_compactor.hookspecs import ensure_hookspecs

log = logging.getLogger(__name__)

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
