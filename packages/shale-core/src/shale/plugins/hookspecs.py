"""Hook specifications of shale's core (pluggy project name ``shale``).

Plugins implement these with the :data:`shale.hookimpl` marker and are found through the
``shale`` entry-point group (see :mod:`shale.plugins`). Built-in features (the local and
in-memory stores, the bloom filter policies) are registered through these same hooks.

``shale-compactor`` and ``shale-gc`` add their own specs through :func:`shale_addhooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from shale.objstore.protocol import ObjectStore

hookspec = pluggy.HookspecMarker("shale")


@hookspec(historic=True)
def shale_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Register new hook specifications.

    :param pluginmanager: the shale plugin manager; call ``add_hookspecs`` on it.

    .. note:: This hook is historic: it is called for every plugin, even ones registered later.
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
    """


@hookspec
def shale_filter_policy(settings: Any) -> list[Any] | None:
    """Return the filter policies this plugin offers for new SSTs (or ``None``).

    :param settings: the database settings (may be ``None``); a policy may read its options
        from them.
    :return: a list of objects implementing :class:`shale.sst.filters.FilterPolicy`, or ``None``.

    Each SST stores its filters under the policy's name; readers skip names they do not know.
    Which of the offered policies are written is chosen by the settings.
    """


@hookspec(firstresult=True)
def shale_block_transformer(settings: Any) -> Any:
    """Return a reversible block transformer (for example encryption), or ``None``.

    :param settings: the database settings.

    Stops at first non-None result. Every reader and writer of a database must use the same
    transformer: the files do not record it.
    """


@hookspec(firstresult=True)
def shale_merge_operator(name: str) -> Any:
    """Return the merge operator registered under ``name``, or ``None``.

    The object must satisfy :class:`shale.merge_operators.MergeOperator`: a ``merge(key,
    existing, operand)`` method (checked when the database opens), optionally ``merge_batch``
    and ``validate(operand)``. ``validate`` raises for an operand the operator cannot merge;
    writes call it before anything is written and reject the write with ``InvalidError``, so
    define it unless every ``bytes`` is a valid operand.

    :param name: the operator name from the settings (``"concat"``, ``"counter"``, ...).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def shale_prefix_extractor(name: str) -> Any:
    """Return the segment prefix extractor registered under ``name``, or ``None``.

    :param name: the extractor name from ``settings.prefix_extractor`` (``"fixed3"``, ...).
    :return: an object implementing :class:`shale.meta.segments.PrefixExtractor` whose ``name`` is
        ``name``, or ``None`` when the name is not this plugin's.

    Stops at first non-None result. The name is recorded in the manifest of a database created
    with the extractor; every writer of that database must resolve it to the same key mapping.
    """


@hookspec
def shale_db_opened(db: Any) -> None:
    """Observe a database that has just opened (how the compactor and GC attach).

    :param db: the open :class:`shale.Db`.

    An exception from one observer is logged and does not stop the others.
    """


@hookspec
def shale_db_closed(db: Any, reason: str) -> None:
    """Observe a database that is closing.

    :param db: the :class:`shale.Db` being closed.
    :param reason: ``"clean"``, ``"fenced"`` or ``"failed"``.

    An exception from one observer is logged and does not stop the others.
    """


@hookspec
def shale_cli(subparsers: Any) -> None:
    """Add subcommands to the ``shale`` command.

    :param subparsers: the ``argparse`` sub-parsers action of the top-level parser. Add a parser
        with ``subparsers.add_parser(name)`` and set its ``func`` default to a callable taking
        the parsed ``argparse.Namespace`` and returning an exit code.
    """
