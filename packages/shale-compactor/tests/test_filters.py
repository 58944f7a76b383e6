"""The compaction filter API and its row adapter (shale_compactor.filters).

Ports SlateDB 0.12.1's ``compaction_filter_iterator.rs`` tests, plus the supplier, chain and
decision-validation rules of the Python API.
"""

from __future__ import annotations

from typing import Any

import pluggy
import pytest

import shale
from shale.errors import InternalError
from shale.row import MERGE, TOMBSTONE, VALUE, Row
from shale_compactor.filters import (
    DROP,
    KEEP,
    CompactionFilter,
    CompactionFilterError,
    CompactionFilterSupplier,
    CompactionJobContext,
    FilterDecision,
    Modify,
    PluginFilterSupplier,
    apply_filters,
    create_filters,
    modify_merge,
    modify_tombstone,
    modify_value,
)

CONTEXT = CompactionJobContext(
    destination=3, is_dest_last_run=False, compaction_clock_tick=0, retention_min_seq=None
)


def entry(key: bytes, value: bytes, seq: int, expire: int | None = None) -> Row:
    return Row(key, seq, VALUE, value, expire, None)


def tombstone(key: bytes, seq: int) -> Row:
    return Row(key, seq, TOMBSTONE, b"", None, None)


def merge(key: bytes, value: bytes, seq: int) -> Row:
    return Row(key, seq, MERGE, value, None, None)


class KeepAllFilter:
    def filter(self, entry: Row) -> Any:
        return KEEP

    def on_compaction_end(self) -> None:
        pass


class DropPrefixFilter:
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix

    def filter(self, entry: Row) -> Any:
        return DROP if entry.key.startswith(self.prefix) else KEEP

    def on_compaction_end(self) -> None:
        pass


class ModifyValueFilter:
    def __init__(self, suffix: bytes) -> None:
        self.suffix = suffix

    def filter(self, entry: Row) -> Any:
        if entry.kind == TOMBSTONE:
            return KEEP
        return modify_value(entry.value + self.suffix)

    def on_compaction_end(self) -> None:
        pass


class TombstoneFilter:
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix

    def filter(self, entry: Row) -> Any:
        return modify_tombstone() if entry.key.startswith(self.prefix) else KEEP

    def on_compaction_end(self) -> None:
        pass


def filtered(rows: list[Row], filters: list[Any]) -> list[Row]:
    """``apply_filters`` as a list of ``Row`` (what it yields when filters are given)."""
    out: list[Row] = list(apply_filters(rows, filters))  # type: ignore[arg-type]
    return out


def test_keep_all_filter() -> None:
    entries = [
        entry(b"key1", b"value1", 1),
        entry(b"key2", b"value2", 2),
        entry(b"key3", b"value3", 3),
    ]
    assert list(apply_filters(entries, [KeepAllFilter()])) == entries


def test_drop_prefix_filter() -> None:
    entries = [
        entry(b"drop:key1", b"value1", 1),
        entry(b"keep:key2", b"value2", 2),
        entry(b"drop:key3", b"value3", 3),
        entry(b"keep:key4", b"value4", 4),
    ]
    out = filtered(entries, [DropPrefixFilter(b"drop:")])
    assert out == [entries[1], entries[3]]


def test_modify_value_filter() -> None:
    entries = [entry(b"key1", b"value1", 1), tombstone(b"key2", 2)]
    out = filtered(entries, [ModifyValueFilter(b"_modified")])
    assert out[0].key == b"key1" and out[0].value == b"value1_modified"
    assert out[0].kind == VALUE
    assert out[1] == entries[1]  # tombstone kept unchanged
    assert len(out) == 2


def test_tombstone_decision() -> None:
    entries = [
        entry(b"delete:key1", b"value1", 1),
        entry(b"keep:key2", b"value2", 2),
        entry(b"delete:key3", b"value3", 3),
    ]
    out = filtered(entries, [TombstoneFilter(b"delete:")])
    assert out[0] == tombstone(b"delete:key1", 1)
    assert out[1] == entries[1]
    assert out[2] == tombstone(b"delete:key3", 3)
    assert len(out) == 3


def test_tombstone_on_merge_operand_converts_to_tombstone() -> None:
    entries = [
        entry(b"delete:key1", b"value1", 1),
        merge(b"delete:key2", b"merge2", 2),
        entry(b"keep:key3", b"value3", 3),
    ]
    out = filtered(entries, [TombstoneFilter(b"delete:")])
    assert [r.kind for r in out] == [TOMBSTONE, TOMBSTONE, VALUE]
    assert [r.key for r in out] == [b"delete:key1", b"delete:key2", b"keep:key3"]


def test_on_compaction_end_called_on_completion() -> None:
    class TrackingFilter(KeepAllFilter):
        end_calls = 0

        def on_compaction_end(self) -> None:
            self.end_calls += 1

    flt = TrackingFilter()
    it = apply_filters([entry(b"key1", b"value1", 1), entry(b"key2", b"value2", 2)], [flt])
    assert next(it)[0] == b"key1"
    assert next(it)[0] == b"key2"
    assert flt.end_calls == 0  # not yet: the stream has not ended
    assert next(it, None) is None
    assert flt.end_calls == 1


def test_on_compaction_end_not_called_when_abandoned() -> None:
    class TrackingFilter(KeepAllFilter):
        ended = False

        def on_compaction_end(self) -> None:
            self.ended = True

    flt = TrackingFilter()
    it = apply_filters([entry(b"key1", b"value1", 1), entry(b"key2", b"value2", 2)], [flt])
    next(it)
    it.close()  # e.g. the compaction was stopped
    assert not flt.ended


def test_tombstone_clears_expire_ts() -> None:
    entries = [
        entry(b"delete:key1", b"value1", 1, expire=12345),
        entry(b"keep:key2", b"value2", 2, expire=67890),
    ]
    out = filtered(entries, [TombstoneFilter(b"delete:")])
    assert out[0].kind == TOMBSTONE and out[0].expire_ts is None
    assert out[1].kind == VALUE and out[1].expire_ts == 67890


def test_modify_value_preserves_expire_ts() -> None:
    out = filtered([entry(b"key1", b"value1", 1, expire=12345)], [ModifyValueFilter(b"_modified")])
    assert out == [Row(b"key1", 1, VALUE, b"value1_modified", 12345, None)]


def test_modify_keeps_create_ts_and_seq() -> None:
    row = Row(b"k", 9, VALUE, b"v", 100, 50)

    class ToMerge(KeepAllFilter):
        def filter(self, entry: Row) -> Any:
            return modify_merge(b"op")

    assert list(apply_filters([row], [ToMerge()])) == [Row(b"k", 9, MERGE, b"op", 100, 50)]
    assert list(apply_filters([row], [TombstoneFilter(b"k")])) == [
        Row(b"k", 9, TOMBSTONE, b"", None, 50)
    ]


def test_filter_error_aborts_iteration() -> None:
    class FailingFilter(KeepAllFilter):
        def filter(self, entry: Row) -> Any:
            if entry.key.startswith(b"fail:"):
                raise RuntimeError("intentional failure")
            return KEEP

    entries = [
        entry(b"keep:key1", b"value1", 1),
        entry(b"fail:key2", b"value2", 2),
        entry(b"keep:key3", b"value3", 3),
    ]
    it = apply_filters(entries, [FailingFilter()])
    assert next(it) == entries[0]
    with pytest.raises(CompactionFilterError) as info:
        next(it)
    assert info.value.stage == "filter"
    assert isinstance(info.value, InternalError)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_invalid_decision_aborts() -> None:
    class Bad(KeepAllFilter):
        def filter(self, entry: Row) -> Any:
            return "keep"

    with pytest.raises(CompactionFilterError, match="invalid decision"):
        list(apply_filters([entry(b"k", b"v", 1)], [Bad()]))


def test_on_compaction_end_error_after_all_filters_ended() -> None:
    ended: list[str] = []

    class Failing(KeepAllFilter):
        def on_compaction_end(self) -> None:
            ended.append("failing")
            raise RuntimeError("intentional failure on compaction end")

    class Tracking(KeepAllFilter):
        def on_compaction_end(self) -> None:
            ended.append("tracking")

    with pytest.raises(CompactionFilterError) as info:
        list(apply_filters([entry(b"k", b"v", 1)], [Failing(), Tracking()]))
    assert info.value.stage == "end"
    assert ended == ["failing", "tracking"]


def test_chain_applies_in_order() -> None:
    seen: list[bytes] = []

    class Recorder(KeepAllFilter):
        def filter(self, entry: Row) -> Any:
            seen.append(entry.value)
            return KEEP

    entries = [entry(b"drop:a", b"1", 1), entry(b"keep:b", b"2", 2)]
    out = filtered(entries, [DropPrefixFilter(b"drop:"), ModifyValueFilter(b"!"), Recorder()])
    assert out == [Row(b"keep:b", 2, VALUE, b"2!", None, None)]
    assert seen == [b"2!"]  # the dropped row never reaches later filters


def test_no_filters_is_passthrough() -> None:
    rows = [(b"a", 1, VALUE, b"v", None, None)]
    out = list(apply_filters(rows, []))
    assert out == rows and type(out[0]) is tuple


def test_plain_tuples_become_rows() -> None:
    rows = [(b"a", 1, VALUE, b"v", None, None)]
    got: list[Any] = []

    class Capture(KeepAllFilter):
        def filter(self, entry: Row) -> Any:
            got.append(entry)
            return KEEP

    list(apply_filters(rows, [Capture()]))
    assert type(got[0]) is Row and got[0].key == b"a"


# -- decisions ---------------------------------------------------------------------------------


def test_decision_constructors() -> None:
    assert modify_value(b"x") == Modify(VALUE, b"x")
    assert modify_tombstone() == Modify(TOMBSTONE)
    assert modify_merge(bytearray(b"m")) == Modify(MERGE, b"m")
    assert FilterDecision.KEEP is KEEP and FilterDecision.DROP is DROP
    assert FilterDecision.modify_value(b"y") == Modify(VALUE, b"y")
    assert repr(KEEP) == "KEEP" and repr(DROP) == "DROP"
    assert "tombstone" in repr(modify_tombstone())
    with pytest.raises(TypeError):
        Modify(7, b"")
    with pytest.raises(TypeError):
        Modify(VALUE, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Modify(TOMBSTONE, b"x")


def test_protocols_are_runtime_checkable() -> None:
    assert isinstance(KeepAllFilter(), CompactionFilter)

    class Supplier:
        def create_compaction_filter(self, context: CompactionJobContext) -> Any:
            return KeepAllFilter()

    assert isinstance(Supplier(), CompactionFilterSupplier)


# -- suppliers ---------------------------------------------------------------------------------


def test_create_filters_shapes() -> None:
    class Supplier:
        def __init__(self, result: Any) -> None:
            self.result = result
            self.contexts: list[CompactionJobContext] = []

        def create_compaction_filter(self, context: CompactionJobContext) -> Any:
            self.contexts.append(context)
            return self.result

    assert create_filters(None, CONTEXT) == []
    assert create_filters(Supplier(None), CONTEXT) == []
    f = KeepAllFilter()
    s = Supplier(f)
    assert create_filters(s, CONTEXT) == [f]
    assert s.contexts == [CONTEXT]
    g = KeepAllFilter()
    assert create_filters(Supplier([f, None, g]), CONTEXT) == [f, g]
    with pytest.raises(CompactionFilterError, match="not a CompactionFilter"):
        create_filters(Supplier(object()), CONTEXT)


def test_create_filters_error_is_creation_error() -> None:
    class Failing:
        def create_compaction_filter(self, context: CompactionJobContext) -> Any:
            raise RuntimeError("intentional failure")

    with pytest.raises(CompactionFilterError) as info:
        create_filters(Failing(), CONTEXT)
    assert info.value.stage == "create"
    assert "intentional failure" in str(info.value)


hookspec = shale.hookspec
hookimpl = shale.hookimpl


class _Specs:
    @hookspec
    def shale_compaction_filter(self, context: Any) -> Any:
        """Test copy of the compactor's hook spec."""


class _Host:
    def __init__(self, *plugins: object, with_spec: bool = True) -> None:
        self.manager = pluggy.PluginManager("shale")
        if with_spec:
            self.manager.add_hookspecs(_Specs)
        for p in plugins:
            self.manager.register(p)


def test_plugin_filter_supplier_collects_hook_results() -> None:
    f1, f2 = KeepAllFilter(), DropPrefixFilter(b"x")
    contexts: list[Any] = []

    class P1:
        @hookimpl
        def shale_compaction_filter(self, context: Any) -> Any:
            contexts.append(context)
            return f1

    class P2:
        @hookimpl
        def shale_compaction_filter(self, context: Any) -> Any:
            return f2

    class P3:
        @hookimpl
        def shale_compaction_filter(self, context: Any) -> Any:
            return None

    got = PluginFilterSupplier(_Host(P1(), P2(), P3())).create_compaction_filter(CONTEXT)
    assert sorted(map(id, got)) == sorted([id(f1), id(f2)])
    assert contexts == [CONTEXT]


def test_plugin_filter_supplier_without_spec() -> None:
    assert PluginFilterSupplier(_Host(with_spec=False)).create_compaction_filter(CONTEXT) == []


def test_plugin_hook_error_is_creation_error() -> None:
    class Broken:
        @hookimpl
        def shale_compaction_filter(self, context: Any) -> Any:
            raise ValueError("bad config")

    with pytest.raises(CompactionFilterError) as info:
        create_filters(PluginFilterSupplier(_Host(Broken())), CONTEXT)
    assert info.value.stage == "create"
