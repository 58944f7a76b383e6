"""Hook specifications of shale's core (pluggy project name ``shale``).

Plugins implement these with the :data:`shale.hookimpl` marker and are found through the
``shale`` entry-point group (see :mod:`shale.plugins`). Built-in features (the local and
in-memory stores, the bloom filter policies) are registered through these same hooks.
Core calls them only through the typed methods of :class:`shale.plugins.PluginHost`
(``host.db_opened(db)``, ``host.merge_operator(name)``, ...).

``shale-compactor`` and ``shale-gc`` add their own specs through :func:`shale_addhooks`.

Threads: each spec says which thread calls it. None of them is called while a lock of the
database is held, so an implementation may call back into the database (but must not wait for
its background threads from an observer called on one of them).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import pluggy

from shale.markers import hookspec

if TYPE_CHECKING:
    from shale.admin import Admin
    from shale.db import Db
    from shale.fbs.manifest import Manifest
    from shale.merge_operators import MergeOperator
    from shale.meta.segments import PrefixExtractor
    from shale.objstore.protocol import ObjectStore
    from shale.settings import Settings
    from shale.sst.compression import BlockTransformer
    from shale.sst.filters import FilterPolicy
    from shale.tracing import Tracer


@hookspec(historic=True)
def shale_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Register new hook specifications.

    :param pluginmanager: the shale plugin manager; call ``add_hookspecs`` on it.

    .. note:: This hook is historic: it is called for every plugin, even ones registered later.

    Thread: the one that creates the plugin host (the first to open a database or a store), or
    the one registering a plugin later.
    """


@hookspec(firstresult=True)
def shale_open_object_store(url: str, options: dict[str, Any]) -> ObjectStore | None:
    """Open an object store for ``url`` if this plugin owns its scheme.

    :param url: the URL or plain path the user gave (``file:///data/db``, ``s3://bucket/p``).
    :param options: backend keyword options passed by the caller (may be empty).
    :return: an object implementing :class:`shale.objstore.ObjectStore`, or ``None`` when the
        URL's scheme is not this plugin's.

    Stops at first non-None result. Wrappers (retry, metrics, fault injection) implement this
    hook with ``wrapper=True`` and wrap the store the inner implementations return.

    Thread: the caller of :meth:`shale.Db.open` (or of :func:`shale.plugins.open_store`, a
    standalone compactor's or GC's ``open``, a ``shale`` command).
    """


@hookspec
def shale_filter_policy(settings: Settings | None) -> list[FilterPolicy] | None:
    """Return the filter policies this plugin offers for new SSTs (or ``None``).

    :param settings: the database settings (may be ``None``); a policy may read its options
        from them.
    :return: a list of objects implementing :class:`shale.sst.filters.FilterPolicy`, or ``None``.

    Each SST stores its filters under the policy's name; readers skip names they do not know.
    Which of the offered policies are written is chosen by the settings.

    Thread: the caller of :meth:`shale.Db.open` (and of a compactor's constructor).
    """


@hookspec(firstresult=True)
def shale_block_transformer(settings: Settings | None) -> BlockTransformer | None:
    """Return a reversible block transformer (for example encryption), or ``None``.

    :param settings: the database settings.
    :return: an object implementing :class:`shale.sst.compression.BlockTransformer`, or
        ``None``.

    Stops at first non-None result. Every reader and writer of a database must use the same
    transformer: the files do not record it.

    Thread: the caller of :meth:`shale.Db.open` (and of a compactor's constructor).
    """


@hookspec(firstresult=True)
def shale_merge_operator(name: str) -> MergeOperator | None:
    """Return the merge operator registered under ``name``, or ``None``.

    The object must satisfy :class:`shale.merge_operators.MergeOperator`: a ``merge(key,
    existing, operand)`` method (checked when the database opens), optionally ``merge_batch``
    and ``validate(operand)``. ``validate`` raises for an operand the operator cannot merge;
    writes call it before anything is written and reject the write with ``InvalidError``, so
    define it unless every ``bytes`` is a valid operand.

    :param name: the operator name from the settings (``"concat"``, ``"counter"``, ...).

    Stops at first non-None result.

    Thread: the caller of :meth:`shale.Db.open` (or of a reader's or compactor's ``open``). The
    operator it returns is then called from the writer's, the readers' and the compactor's
    threads: it must be thread-safe.
    """


@hookspec(firstresult=True)
def shale_prefix_extractor(name: str) -> PrefixExtractor | None:
    """Return the prefix extractor registered under ``name``, or ``None``.

    :param name: the extractor name from ``settings.prefix_extractor`` (``"fixed3"``, ...), or
        from a prefix bloom's name in ``settings.filter_policies`` (``"_bf:p=fixed3"``).
    :return: an object implementing :class:`shale.meta.segments.PrefixExtractor` whose ``name`` is
        ``name``, or ``None`` when the name is not this plugin's.

    Stops at first non-None result. The name is recorded in the manifest of a database created
    with the extractor; every writer of that database must resolve it to the same key mapping.
    """


@hookspec
def shale_db_opened(db: Db) -> None:
    """Observe a database that has just opened (how the compactor and GC attach).

    :param db: the open :class:`shale.Db`.

    An exception from one observer is logged with the plugin's name and does not stop the
    others; ``wrapper=True`` implementations run around all of them.

    Thread: the caller of :meth:`shale.Db.open`, after the database's background threads have
    started and before ``open`` returns. Start long work on a thread of your own.
    """


@hookspec
def shale_db_closed(db: Db, reason: str) -> None:
    """Observe a database that is closing (once per database).

    :param db: the :class:`shale.Db` being closed.
    :param reason: ``"clean"``, ``"fenced"`` or ``"failed"`` (:class:`shale.CloseReason`).

    An exception from one observer is logged with the plugin's name and does not stop the
    others; ``wrapper=True`` implementations run around all of them.

    Thread: the caller of :meth:`shale.Db.close` (or whichever thread runs ``__del__`` of a
    database dropped without closing), or -- when the database closes itself because it was
    fenced or failed -- the thread that found out: a background thread (WAL or memtable
    flusher) or a caller whose write did. It holds no lock of the database then, but an observer
    must not join it.
    """


@hookspec(firstresult=True)
def shale_tracer() -> Tracer | None:
    """Return a tracer for shale's trace spans (:class:`shale.tracing.Tracer`), or ``None``.

    Stops at first non-None result. The plugin host installs it with
    :func:`shale.tracing.set_tracer` when it loads (unless a tracer is already installed);
    without one, spans cost nothing. ``shale-otel`` implements it.

    Thread: the one that creates the plugin host, or the one registering a plugin later.
    """


@hookspec
def shale_l0_flushed(db: Db, manifest: Manifest) -> None:
    """Observe a manifest update of ``db``'s writer that added L0 SSTs (a memtable flush).

    :param db: the open :class:`shale.Db` whose memtable flusher published the L0 SSTs.
    :param manifest: the manifest version just written (it lists the new L0 views).

    How an in-process compactor is woken at once instead of at its next poll (shale-compactor
    does so); a compactor in another process still polls. An exception from one observer is
    logged with the plugin's name and does not stop the others.

    Thread: the database's memtable flusher (or the caller of ``flush``/``close`` flushing it),
    after the manifest is written, holding no lock of the database. Do not block: the next
    flush waits for the observers.
    """


@hookspec
def shale_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add subcommands to the ``shale`` command.

    :param subparsers: the ``argparse`` sub-parsers action of the top-level parser. Add a parser
        with ``subparsers.add_parser(name)`` and set its ``func`` default to a callable taking
        the parsed ``argparse.Namespace`` and returning an exit code. Use the option groups of
        :mod:`shale.cli.options` (``parents=[...]``) for the store, settings and verbosity
        options every command shares.

    Thread: the main thread, while ``shale`` builds its parser.
    """


@hookspec(firstresult=True)
def shale_admin_run_gc_once(admin: Admin, options: Any) -> object | None:
    """Run the garbage collector once on ``admin``'s database (:meth:`shale.Admin.run_gc_once`).

    :param admin: the :class:`shale.Admin` asking: its ``store``, ``root``, ``settings`` and
        ``clock`` say which database and how.
    :param options: the collector's options (:class:`shale.settings.GarbageCollectorOptions`),
        or ``None`` for the collector's defaults.
    :return: the collector's report, or ``None`` when this plugin has no collector (shale-gc
        implements it).

    Stops at first non-None result. With no implementation, :meth:`shale.Admin.run_gc_once`
    raises :class:`~shale.errors.InvalidError` naming the package to install.

    Thread: the caller of :meth:`shale.Admin.run_gc_once`.
    """


@hookspec(firstresult=True)
def shale_admin_submit_compaction(admin: Admin, spec: Any) -> object | None:
    """Submit a compaction to ``admin``'s database without fencing its compactor
    (:meth:`shale.Admin.submit_compaction`).

    :param admin: the :class:`shale.Admin` asking (``store``, ``root``, ``settings``, ``clock``).
    :param spec: what to compact, in a form the implementing plugin parses (shale-compactor: a
        ``CompactionSpec``, its JSON text or dict, or ``"full"``).
    :return: the submitted :class:`shale.fbs.compactions.Compaction` as read back from the
        ``.compactions`` file, or ``None`` when this plugin does not compact (shale-compactor
        implements it).

    Stops at first non-None result. With no implementation, :meth:`shale.Admin.submit_compaction`
    raises :class:`~shale.errors.InvalidError` naming the package to install.

    Thread: the caller of :meth:`shale.Admin.submit_compaction`.
    """
