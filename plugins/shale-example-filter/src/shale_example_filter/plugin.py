"""An example compaction filter plugin: keys with configured prefixes disappear on compaction.

Copy this folder to write your own filter. The moving parts:

* ``pyproject.toml`` registers this module in the ``shale`` entry-point group, so every shale
  process that has the distribution installed loads it;
* :func:`shale_compaction_filter` implements the hook declared by ``shale-compactor``: it is
  called once per compaction job with a :class:`shale_compactor.filters.CompactionJobContext`
  and returns a filter for that job, or ``None`` to stay out of it;
* :class:`DropPrefixFilter` decides per row (see :mod:`shale_compactor.filters` for the API).

Configuration: the environment variable :data:`PREFIXES_ENV`
(``SHALE_PLUGIN_EXAMPLE_FILTER_PREFIXES``, in the ``SHALE_PLUGIN_*`` namespace core reserves for
plugins, so the settings loader never mistakes it for a misspelt setting) holds a
comma-separated list of key prefixes, e.g. ``tmp:,cache:`` (UTF-8; blanks around items
are ignored). Unset or empty: the plugin returns no filter and compactions are unaffected. The
variable is read at the start of each compaction job, in the compactor's process.

Why a tombstone and not a drop: dropping a row leaves nothing to hide an older version of the
same key that sits in an older sorted run not part of this compaction -- it would reappear.
So the filter turns matching rows into tombstones, and only drops them outright when the
destination is the last (oldest) sorted run, where nothing older can exist. Like any filter
that deletes, it may remove versions that open snapshots are still reading.
"""

from __future__ import annotations

import os
from typing import Any

import shale
from shale.spi import TOMBSTONE, get_logger, plugin_var
from shale_compactor.filters import DROP, KEEP, CompactionJobContext, Decision, modify_tombstone

__all__ = ["PREFIXES_ENV", "DropPrefixFilter", "parse_prefixes", "shale_compaction_filter"]

log = get_logger(__name__)

#: Environment variable: comma-separated key prefixes whose keys are removed on compaction.
#: ``SHALE_PLUGIN_EXAMPLE_FILTER_PREFIXES`` (it was ``SHALE_EXAMPLE_FILTER_PREFIXES``, which the
#: settings loader rejected as an unknown setting, failing every ``shale`` command).
PREFIXES_ENV = plugin_var("example_filter", "prefixes")


def parse_prefixes(text: str | None) -> tuple[bytes, ...]:
    """The prefixes of a ``"tmp:,cache:"``-style list (empty items are skipped).

    :param text: the variable's value, or ``None``.
    :return: the prefixes as UTF-8 bytes, in the given order, without duplicates.
    """
    if not text:
        return ()
    out: list[bytes] = []
    for item in text.split(","):
        item = item.strip()
        if item and item.encode() not in out:
            out.append(item.encode())
    return tuple(out)


class DropPrefixFilter:
    """Removes the rows whose key starts with one of ``prefixes``.

    Rows are turned into tombstones (expiry cleared), or dropped when the compaction writes the
    last sorted run; existing tombstones are kept as they are. Counts what it did and logs it
    in :meth:`on_compaction_end`.

    :param prefixes: the key prefixes (non-empty).
    :param context: the job's context (``is_dest_last_run`` chooses drop over tombstone).
    """

    def __init__(self, prefixes: tuple[bytes, ...], context: CompactionJobContext) -> None:
        if not prefixes:
            raise ValueError("DropPrefixFilter needs at least one prefix")
        self.prefixes = prefixes
        self.context = context
        self.removed = 0
        self.seen = 0

    def filter(self, entry: Any) -> Decision:
        """Keep the row, or remove it if its key has one of the prefixes."""
        self.seen += 1
        if not entry.key.startswith(self.prefixes):
            return KEEP
        self.removed += 1
        if self.context.is_dest_last_run:
            return DROP
        if entry.kind == TOMBSTONE:
            return KEEP
        return modify_tombstone()

    def on_compaction_end(self) -> None:
        """Log how many rows were removed from this job's output."""
        log.info(
            "shale-example-filter: removed %d of %d rows (prefixes %r) compacting into SR %d",
            self.removed,
            self.seen,
            self.prefixes,
            self.context.destination,
        )


@shale.hookimpl(optionalhook=True)
def shale_compaction_filter(context: CompactionJobContext) -> DropPrefixFilter | None:
    """A :class:`DropPrefixFilter` when :data:`PREFIXES_ENV` names prefixes, else ``None``.

    ``optionalhook``: loading this plugin without ``shale-compactor`` (which declares the hook)
    is not an error; the hook is simply never called.
    """
    prefixes = parse_prefixes(os.environ.get(PREFIXES_ENV))
    if not prefixes:
        return None
    return DropPrefixFilter(prefixes, context)
