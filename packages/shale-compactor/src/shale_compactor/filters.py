"""Compaction filters: user code that keeps, drops or rewrites rows while they are compacted.

This is SlateDB's ``compaction_filter`` API (feature ``compaction_filters``) in Python:

* A :class:`CompactionFilterSupplier` is asked for a fresh :class:`CompactionFilter` at the
  start of every compaction job (also when a job resumes), with a :class:`CompactionJobContext`.
  Plugins take part through the ``shale_compaction_filter(context)`` hook (declared by
  :mod:`shale_compactor.hookspecs`); :class:`PluginFilterSupplier` collects every plugin's filter.
* ``filter(entry)`` is called once per row that survives retention, with the row as a
  :class:`shale.row.Row`, and returns :data:`KEEP`, :data:`DROP` or a :class:`Modify`
  (:func:`modify_value`, :func:`modify_tombstone`, :func:`modify_merge`). A modification keeps
  key, seq and ``create_ts``; it keeps ``expire_ts`` too, except that a tombstone never expires
  (its ``expire_ts`` is cleared).
* ``on_compaction_end()`` is called exactly once per filter, after the last row, and only when
  every row was processed (not after an error or a stop).
* Any exception from the supplier, ``filter`` or ``on_compaction_end``, or a decision that is
  not one of the above, aborts the compaction with :class:`CompactionFilterError` (an
  :class:`~shale.errors.InternalError`, as in SlateDB), chained from the original.

Several filters form a chain, applied in order: a row dropped by one is not shown to the next,
and a modified row is shown to the next in its modified form.

Warnings (as in SlateDB): ``DROP`` removes a row without leaving a tombstone, so an older
version of the key in an older sorted run may become visible again; prefer
``modify_tombstone()`` to delete a key. For merge operands prefer ``DROP``: a tombstone would
also delete the older operands. Filters may drop or change rows that active snapshots still
read.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from shale.spi import KIND_NAMES, MERGE, TOMBSTONE, VALUE, InternalError, Row, get_logger

__all__ = [
    "DROP",
    "KEEP",
    "CompactionFilter",
    "CompactionFilterError",
    "CompactionFilterSupplier",
    "CompactionJobContext",
    "Decision",
    "Drop",
    "FilterDecision",
    "Keep",
    "Modify",
    "PluginFilterSupplier",
    "apply_filters",
    "create_filters",
    "modify_merge",
    "modify_tombstone",
    "modify_value",
]

log = get_logger(__name__)


class CompactionFilterError(InternalError):
    """A compaction filter (or its supplier) failed; the compaction is aborted.

    :attr stage: ``"create"`` (the supplier or hook), ``"filter"`` (a row) or ``"end"``
        (``on_compaction_end``).
    """

    def __init__(self, message: str, stage: str, **detail: object) -> None:
        super().__init__(message, stage=stage, **detail)
        self.stage = stage


@dataclass(frozen=True, slots=True)
class CompactionJobContext:
    """What a filter is told about the compaction job it filters (read only).

    :ivar destination: the id of the sorted run being written.
    :ivar is_dest_last_run: the destination is the oldest sorted run (tombstones are dropped).
    :ivar compaction_clock_tick: the time (ms) expiry is judged against.
    :ivar retention_min_seq: rows at or above this seq may be read by active snapshots;
        changing them breaks those snapshots' consistency. ``None``: no snapshot information.
    """

    destination: int
    is_dest_last_run: bool
    compaction_clock_tick: int
    retention_min_seq: int | None


class Keep:
    """Decision: keep the row unchanged (use the singleton :data:`KEEP`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


class Drop:
    """Decision: remove the row from the output, leaving no tombstone (use :data:`DROP`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


#: Keep the row unchanged.
KEEP = Keep()
#: Remove the row from the output (no tombstone: older versions may reappear).
DROP = Drop()


@dataclass(frozen=True, slots=True)
class Modify:
    """Decision: replace the row's value (SlateDB's ``Modify(ValueDeletable)``).

    Build it with :func:`modify_value`, :func:`modify_tombstone` or :func:`modify_merge`.

    :ivar kind: :data:`shale.row.VALUE`, :data:`~shale.row.TOMBSTONE` or
        :data:`~shale.row.MERGE`.
    :ivar value: the new value or operand (``b""`` for a tombstone).
    """

    kind: int
    value: bytes = b""

    def __post_init__(self) -> None:
        if self.kind not in (VALUE, TOMBSTONE, MERGE):
            raise TypeError(f"Modify.kind must be VALUE, TOMBSTONE or MERGE, not {self.kind!r}")
        if isinstance(self.value, (bytearray, memoryview)):
            object.__setattr__(self, "value", bytes(self.value))
        if not isinstance(self.value, bytes):
            raise TypeError(f"Modify.value must be bytes, not {type(self.value).__name__}")
        if self.kind == TOMBSTONE and self.value:
            raise TypeError("a tombstone has no value")

    def __repr__(self) -> str:
        return f"Modify({KIND_NAMES[self.kind]}, {self.value!r})"


def modify_value(value: bytes | bytearray | memoryview) -> Modify:
    """Decision: replace the row by a value (``expire_ts`` kept)."""
    return Modify(VALUE, bytes(value))


def modify_tombstone() -> Modify:
    """Decision: turn the row into a tombstone (``expire_ts`` cleared)."""
    return Modify(TOMBSTONE, b"")


def modify_merge(value: bytes | bytearray | memoryview) -> Modify:
    """Decision: replace the row by a merge operand (``expire_ts`` kept)."""
    return Modify(MERGE, bytes(value))


#: What ``CompactionFilter.filter`` returns.
Decision = Keep | Drop | Modify


class FilterDecision:
    """Namespace mirroring SlateDB's ``CompactionFilterDecision``."""

    KEEP = KEEP
    DROP = DROP
    Modify = Modify
    modify_value = staticmethod(modify_value)
    modify_tombstone = staticmethod(modify_tombstone)
    modify_merge = staticmethod(modify_merge)


@runtime_checkable
class CompactionFilter(Protocol):
    """Filters the rows of one compaction job; one instance per job, called from one thread."""

    def filter(self, entry: Row) -> Decision:
        """Decide what happens to one row.

        :param entry: the row after retention and merging (key, seq, kind, value, expire_ts,
            create_ts), rows in compacted order (key ascending, seq descending).
        :return: :data:`KEEP`, :data:`DROP` or a :class:`Modify`.
        """
        ...

    def on_compaction_end(self) -> None:
        """Called once after the last row (flush state, log statistics...)."""
        ...


@runtime_checkable
class CompactionFilterSupplier(Protocol):
    """Creates the filter(s) of each compaction job; shared by every job, so thread-safe."""

    def create_compaction_filter(
        self, context: CompactionJobContext
    ) -> CompactionFilter | Sequence[CompactionFilter] | None:
        """A new filter for the job described by ``context`` (or several, or ``None``).

        Called each time a job starts or resumes; a resumed job's filter only sees the rows
        not yet written. Raise to abort the compaction.
        """
        ...


class PluginFilterSupplier:
    """Asks every plugin's ``shale_compaction_filter(context)`` hook for a filter.

    :param host: a :class:`shale.plugins.PluginHost` (default: the process-wide host).
        Without the hook specification registered (``shale_compactor`` not loaded), no filter.
    """

    def __init__(self, host: Any = None) -> None:
        self._host = host

    def create_compaction_filter(self, context: CompactionJobContext) -> list[CompactionFilter]:
        from shale_compactor.hooks import CompactorHooks

        host = self._host
        if host is None:
            from shale.spi import get_host

            host = get_host()
        return CompactorHooks(host.manager).compaction_filters(context)


def create_filters(supplier: Any, context: CompactionJobContext) -> list[CompactionFilter]:
    """The filters ``supplier`` creates for a job, as a list (empty: no filtering).

    :param supplier: a :class:`CompactionFilterSupplier`, or ``None``.
    :raises CompactionFilterError: the supplier raised or returned something that is not a
        filter (stage ``"create"``).
    """
    if supplier is None:
        return []
    try:
        made = supplier.create_compaction_filter(context)
    except CompactionFilterError:
        raise  # already classified (a supplier combining others)
    except Exception as exc:
        raise CompactionFilterError(
            "compaction filter creation failed",
            "create",
            error=f"{type(exc).__name__}: {exc}",
        ) from exc
    if made is None:
        return []
    filters = list(made) if isinstance(made, (list, tuple)) else [made]
    filters = [f for f in filters if f is not None]
    for f in filters:
        if not callable(getattr(f, "filter", None)) or not callable(
            getattr(f, "on_compaction_end", None)
        ):
            raise CompactionFilterError(
                "compaction filter supplier returned an object that is not a CompactionFilter",
                "create",
                type=type(f).__name__,
            )
    return filters


def _apply_decision(row: tuple[Any, ...], decision: object, flt: object) -> tuple[Any, ...] | None:
    if decision is KEEP or type(decision) is Keep:
        return row
    if decision is DROP or type(decision) is Drop:
        return None
    if type(decision) is Modify:
        kind = decision.kind
        if kind == TOMBSTONE:
            return Row(row[0], row[1], TOMBSTONE, b"", None, row[5])
        return Row(row[0], row[1], kind, decision.value, row[4], row[5])
    raise CompactionFilterError(
        "compaction filter returned an invalid decision",
        "filter",
        filter=type(flt).__name__,
        decision=repr(decision)[:80],
    )


def apply_filters(
    rows: Iterable[tuple[Any, ...]], filters: Sequence[CompactionFilter]
) -> Generator[tuple[Any, ...], None, None]:
    """Pass ``rows`` through the chain of ``filters``; then call each ``on_compaction_end``.

    The rows given to filters (and yielded) are :class:`shale.row.Row` instances. With no
    filters, ``rows`` is returned unchanged (no per-row cost).

    :raises CompactionFilterError: a filter raised or returned an invalid decision (stage
        ``"filter"``), or an ``on_compaction_end`` raised (stage ``"end"``; every filter's
        ``on_compaction_end`` is still called, the first error is raised).
    """
    if not filters:
        yield from rows
        return
    make = Row._make
    chain = list(filters)
    for raw in rows:
        row: tuple[Any, ...] | None = raw if type(raw) is Row else make(raw)
        for flt in chain:
            try:
                decision = flt.filter(row)  # type: ignore[arg-type]
            except Exception as exc:
                raise CompactionFilterError(
                    "compaction filter failed",
                    "filter",
                    filter=type(flt).__name__,
                    key=row[0][:64],  # type: ignore[index]
                    seq=row[1],  # type: ignore[index]
                    error=f"{type(exc).__name__}: {exc}",
                ) from exc
            row = _apply_decision(row, decision, flt)  # type: ignore[arg-type]
            if row is None:
                break
        if row is not None:
            yield row
    first: CompactionFilterError | None = None
    for flt in chain:
        try:
            flt.on_compaction_end()
        except Exception as exc:
            log.warning(
                "compaction filter %s failed in on_compaction_end: %s", type(flt).__name__, exc
            )
            if first is None:
                first = CompactionFilterError(
                    "compaction filter on_compaction_end failed",
                    "end",
                    filter=type(flt).__name__,
                    error=f"{type(exc).__name__}: {exc}",
                )
                first.__cause__ = exc
    if first is not None:
        raise first
