"""Tests of shale.merge_operators: resolution, built-in operators, error wrapping, the hook."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shale.errors import DataError, InvalidError
from shale.merge_operators import (
    BatchMergeOperator,
    ConcatMergeOperator,
    CounterMergeOperator,
    MergeOperator,
    merge_all,
    resolve_versions,
    shale_merge_operator,
    validate_operand,
)
from shale.plugins import PluginHost, reset_host
from shale.row import MERGE, TOMBSTONE, VALUE, Row

K = b"k"
CONCAT = ConcatMergeOperator()
COUNTER = CounterMergeOperator()
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)


def enc(n: int) -> bytes:
    return struct.pack("<q", n)


class PairwiseOnly:
    """Wraps an operator, hiding its merge_batch so merge_all folds merge pairwise."""

    def __init__(self, inner: MergeOperator) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
        self.calls += 1
        return self.inner.merge(key, existing, operand)


@pytest.fixture(autouse=True)
def _fresh_host() -> Iterator[None]:
    reset_host()
    yield
    reset_host()


# --------------------------------------------------------------------------------------------
# resolve_versions: table-driven, FORMAT.md §11.3.


def V(seq: int, value: bytes, *, exp: int | None = None, ct: int | None = None) -> Row:
    return Row(K, seq, VALUE, value, exp, ct)


def M(seq: int, value: bytes, *, exp: int | None = None, ct: int | None = None) -> Row:
    return Row(K, seq, MERGE, value, exp, ct)


def T(seq: int, *, exp: int | None = None, ct: int | None = None) -> Row:
    return Row(K, seq, TOMBSTONE, b"", exp, ct)


NOW = 1000

RESOLVE_CASES: list[tuple[str, list[Row], dict[str, object], object]] = [
    ("empty", [], {}, None),
    ("value only", [V(5, b"a", ct=10, exp=2000)], {}, (b"a", 5, 10, 2000)),
    ("newest value wins", [V(6, b"new", ct=20), V(5, b"old", ct=10)], {}, (b"new", 6, 20, None)),
    ("tombstone", [T(7, ct=30), V(5, b"a", ct=10)], {}, None),
    (
        "operands over value",
        [M(8, b"3", ct=40), M(7, b"2", ct=30), V(5, b"1", ct=10, exp=5000), V(2, b"older")],
        {},
        (b"123", 8, 40, 5000),
    ),
    (
        "operands over tombstone",
        [M(8, b"3", ct=40), M(7, b"2", ct=30), T(6, ct=35), V(5, b"hidden", ct=10)],
        {},
        (b"23", 8, 40, None),
    ),
    ("operands with no base", [M(8, b"b", ct=4), M(3, b"a", ct=9)], {}, (b"ab", 8, 9, None)),
    (
        "create_ts max, expire_ts min over merged rows",
        [M(9, b"c", ct=5, exp=9000), M(8, b"b", exp=3000), V(7, b"a", ct=7, exp=4000)],
        {},
        (b"abc", 9, 7, 3000),
    ),
    (
        "rows below the base are ignored",
        [M(9, b"x", ct=1), V(8, b"v", ct=2), M(7, b"y", ct=99, exp=1)],
        {},
        (b"vx", 9, 2, None),
    ),
    ("expired base value acts as tombstone", [V(5, b"a", exp=NOW)], {"now_ms": NOW}, None),
    ("unexpired base value", [V(5, b"a", exp=NOW + 1)], {"now_ms": NOW}, (b"a", 5, None, NOW + 1)),
    (
        "expired base under operands: merged over None, its expire_ts dropped",
        [M(8, b"m", ct=50), V(5, b"a", ct=60, exp=NOW - 1)],
        {"now_ms": NOW},
        (b"m", 8, 60, None),
    ),
    (
        "expired operand skipped",
        [M(9, b"gone", ct=99, exp=NOW), M(8, b"b", ct=20, exp=NOW + 5), V(5, b"a", ct=10)],
        {"now_ms": NOW},
        (b"ab", 8, 20, NOW + 5),
    ),
    ("only expired operands", [M(9, b"x", exp=1), M(8, b"y", exp=2)], {"now_ms": NOW}, None),
    (
        "only expired operands over a value",
        [M(9, b"x", exp=1), V(8, b"v", ct=3)],
        {"now_ms": NOW},
        (b"v", 8, 3, None),
    ),
    ("expired tombstone is still a tombstone", [T(5, exp=1)], {"now_ms": NOW}, None),
    (
        "hide_expired=False keeps an expired value",
        [V(5, b"a", exp=1)],
        {"now_ms": NOW, "hide_expired": False},
        (b"a", 5, None, 1),
    ),
    (
        "hide_expired=False keeps expired operands",
        [M(9, b"x", exp=1), M(8, b"y", exp=2), V(5, b"v", exp=3)],
        {"now_ms": NOW, "hide_expired": False},
        (b"vyx", 9, None, 1),
    ),
    ("no now_ms: no expiry", [M(9, b"x", exp=1), V(5, b"v", exp=3)], {}, (b"vx", 9, None, 1)),
]


@pytest.mark.parametrize(
    "rows,kwargs,expected", [c[1:] for c in RESOLVE_CASES], ids=[c[0] for c in RESOLVE_CASES]
)
def test_resolve_versions(rows: list[Row], kwargs: dict[str, object], expected: object) -> None:
    assert resolve_versions(rows, CONCAT, **kwargs) == expected  # type: ignore[arg-type]
    # plain tuples work the same as Row
    assert resolve_versions([tuple(r) for r in rows], CONCAT, **kwargs) == expected  # type: ignore[arg-type]


def test_resolve_missing_operator() -> None:
    with pytest.raises(InvalidError, match="merge operator missing"):
        resolve_versions([M(2, b"x"), V(1, b"v")], None)
    # no operand to merge: no operator needed
    assert resolve_versions([V(2, b"v"), M(1, b"x")], None) == (b"v", 2, None, None)
    assert resolve_versions([T(2), M(1, b"x")], None) is None
    assert resolve_versions([M(2, b"x", exp=1), V(1, b"v")], None, now_ms=NOW) == (
        b"v",
        1,
        None,
        None,
    )


def test_resolve_counter() -> None:
    rows = [M(4, enc(-2)), M(3, enc(10)), V(1, enc(5))]
    res = resolve_versions(rows, COUNTER)
    assert res is not None and COUNTER.decode(res[0]) == 13


def test_resolve_unknown_kind() -> None:
    with pytest.raises(DataError, match="unknown row kind"):
        resolve_versions([(K, 1, 7, b"", None, None)], CONCAT)


def test_resolve_uses_the_key_and_wraps_errors() -> None:
    seen: list[bytes] = []

    class Recording:
        name = "rec"

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            seen.append(key)
            raise RuntimeError("boom")

    with pytest.raises(DataError, match="merge operator failed") as info:
        resolve_versions([Row(b"the-key", 2, MERGE, b"x")], Recording())
    assert seen == [b"the-key"]
    assert isinstance(info.value.__cause__, RuntimeError)


# --------------------------------------------------------------------------------------------
# merge_all.


def test_merge_all_prefers_merge_batch() -> None:
    calls: list[str] = []

    class Both:
        name = "both"

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            calls.append("merge")
            return (existing or b"") + operand

        def merge_batch(self, key: bytes, existing: bytes | None, operands: list[bytes]) -> bytes:
            calls.append("batch")
            assert isinstance(operands, list)
            return (existing or b"") + b"".join(operands)

    assert merge_all(Both(), K, b"a", (b"b", b"c")) == b"abc"
    assert calls == ["batch"]
    pairwise = PairwiseOnly(CONCAT)
    assert merge_all(pairwise, K, b"a", [b"b", b"c"]) == b"abc"
    assert pairwise.calls == 2


def test_merge_all_empty_batch() -> None:
    for existing in (None, b"x"):
        with pytest.raises(InvalidError, match="merge batch is empty"):
            merge_all(CONCAT, K, existing, [])


def test_merge_all_missing_operator() -> None:
    with pytest.raises(InvalidError, match="merge operator missing"):
        merge_all(None, K, None, [b"x"])


@pytest.mark.parametrize("use_batch", [True, False])
def test_user_exception_is_wrapped_and_chained(use_batch: bool) -> None:
    original = ZeroDivisionError("user bug")

    class Failing:
        name = "failing"

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            raise original

    op: object = Failing()
    if use_batch:
        Failing.merge_batch = lambda self, k, e, ops: self.merge(k, e, ops[0])  # type: ignore[attr-defined]
    with pytest.raises(DataError) as info:
        merge_all(op, b"key-1", None, [b"x"])  # type: ignore[arg-type]
    err = info.value
    assert err.__cause__ is original
    assert "merge operator failed" in str(err)
    assert err.detail["name"] == "failing"
    assert err.detail["key"] == b"key-1"
    assert "ZeroDivisionError: user bug" in str(err)
    assert err.kind == "data"
    # the operands of a write being made are bad input instead
    with pytest.raises(InvalidError) as info2:
        merge_all(op, b"key-1", None, [b"x"], error=InvalidError)  # type: ignore[arg-type]
    assert info2.value.__cause__ is original and info2.value.kind == "invalid"


def test_long_keys_are_shortened_in_errors() -> None:
    with pytest.raises(DataError) as info:
        merge_all(COUNTER, b"k" * 1000, None, [b"bad"])
    key = info.value.detail["key"]
    assert isinstance(key, bytes) and len(key) < 100 and key.endswith(b"...")


def test_builtin_errors_are_wrapped_too() -> None:
    with pytest.raises(DataError, match="merge operator failed") as info:
        merge_all(COUNTER, K, None, [b"short"])
    assert isinstance(info.value.__cause__, InvalidError)
    assert info.value.detail["name"] == "counter"


def test_operator_without_name_uses_its_type() -> None:
    class Nameless:
        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            raise ValueError("x")

    with pytest.raises(DataError) as info:
        merge_all(Nameless(), K, None, [b"x"])  # type: ignore[arg-type]
    assert info.value.detail["name"] == "Nameless"


@pytest.mark.parametrize(
    "result,ok",
    [
        (bytearray(b"ab"), True),
        (memoryview(b"ab"), True),
        ("ab", False),
        (None, False),
        (12, False),
    ],
)
def test_result_must_be_bytes(result: object, ok: bool) -> None:
    class Returns:
        name = "returns"

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> object:
            return result

    if ok:
        out = merge_all(Returns(), K, None, [b"x", b"y"])  # type: ignore[arg-type]
        assert out == b"ab" and type(out) is bytes
    else:
        with pytest.raises(DataError, match="merge operator failed") as info:
            merge_all(Returns(), K, None, [b"x"])  # type: ignore[arg-type]
        assert "non-bytes" in str(info.value)


# --------------------------------------------------------------------------------------------
# Built-in operators.


def test_concat() -> None:
    assert CONCAT.name == "concat"
    assert CONCAT.merge(K, None, b"a") == b"a"
    assert CONCAT.merge(K, b"", b"a") == b"a"
    assert CONCAT.merge(K, b"x", b"a") == b"xa"
    assert CONCAT.merge_batch(K, None, [b"a", b"b"]) == b"ab"
    assert CONCAT.merge_batch(K, b"x", [b"a", b"b"]) == b"xab"
    assert isinstance(CONCAT, MergeOperator) and isinstance(CONCAT, BatchMergeOperator)


def test_counter() -> None:
    assert COUNTER.name == "counter"
    assert COUNTER.merge(K, None, enc(5)) == enc(5)
    assert COUNTER.merge(K, enc(5), enc(-7)) == enc(-2)
    assert COUNTER.merge_batch(K, None, [enc(1), enc(2), enc(3)]) == enc(6)
    assert COUNTER.merge_batch(K, enc(-10), [enc(1)]) == enc(-9)
    assert COUNTER.encode(-1) == b"\xff" * 8
    assert COUNTER.decode(b"\x01" + b"\x00" * 7) == 1
    assert COUNTER.merge(K, enc(I64_MAX - 1), enc(1)) == enc(I64_MAX)
    assert COUNTER.merge(K, enc(I64_MIN + 1), enc(-1)) == enc(I64_MIN)
    assert isinstance(COUNTER, BatchMergeOperator)


@pytest.mark.parametrize(
    "existing,operand",
    [(None, b""), (None, b"1234567"), (None, b"123456789"), (b"1234", enc(1)), (b"", enc(1))],
)
def test_counter_wrong_length(existing: bytes | None, operand: bytes) -> None:
    with pytest.raises(InvalidError, match="8 bytes"):
        COUNTER.merge(K, existing, operand)
    with pytest.raises(InvalidError, match="8 bytes"):
        COUNTER.merge_batch(K, existing, [operand])


def test_counter_validate_accepts_only_8_bytes() -> None:
    COUNTER.validate(enc(-1))
    for bad in (b"", b"1234567", b"123456789"):
        with pytest.raises(InvalidError, match="8 bytes"):
            COUNTER.validate(bad)
    assert not hasattr(CONCAT, "validate")  # every operand is fine for concat


def test_validate_operand_wraps_and_skips_operators_without_validate() -> None:
    validate_operand(CONCAT, K, b"anything")
    with pytest.raises(InvalidError, match="merge operand rejected") as info:
        validate_operand(COUNTER, K, b"123")
    assert info.value.detail["name"] == "counter"
    assert isinstance(info.value.__cause__, InvalidError)


def test_counter_overflow_wraps_like_i64() -> None:
    assert COUNTER.decode(COUNTER.merge(K, enc(I64_MAX), enc(1))) == I64_MIN
    assert COUNTER.decode(COUNTER.merge(K, enc(I64_MIN), enc(-1))) == I64_MAX
    assert COUNTER.decode(COUNTER.merge_batch(K, enc(I64_MAX), [enc(1), enc(-1)])) == I64_MAX
    with pytest.raises(InvalidError, match="signed 64-bit"):
        COUNTER.encode(2**63)


def test_builtins_equality_and_repr() -> None:
    assert ConcatMergeOperator() == ConcatMergeOperator()
    assert ConcatMergeOperator() != CounterMergeOperator()
    assert hash(CounterMergeOperator()) == hash(CounterMergeOperator())
    assert repr(CONCAT) == "ConcatMergeOperator()" and repr(COUNTER) == "CounterMergeOperator()"


_i64 = st.integers(I64_MIN, I64_MAX)


def _outcome(op: object, existing: bytes | None, operands: list[bytes]) -> object:
    try:
        return merge_all(op, K, existing, operands)  # type: ignore[arg-type]
    except DataError as exc:
        return ("error", type(exc.__cause__).__name__)


@settings(max_examples=150, deadline=None)
@given(
    existing=st.none() | st.binary(max_size=8),
    operands=st.lists(st.binary(max_size=8), min_size=1, max_size=12),
    split=st.integers(0, 12),
)
def test_concat_batch_equals_pairwise_and_is_associative(
    existing: bytes | None, operands: list[bytes], split: int
) -> None:
    whole = merge_all(CONCAT, K, existing, operands)
    assert merge_all(PairwiseOnly(CONCAT), K, existing, operands) == whole
    assert whole == (existing or b"") + b"".join(operands)
    # pre-merging a run of operands (as flush/compaction do) changes nothing
    split = min(split, len(operands) - 1)
    head = merge_all(CONCAT, K, existing, operands[: split + 1])
    rest = operands[split + 1 :]
    assert (merge_all(CONCAT, K, head, rest) if rest else head) == whole
    if rest:
        tail = merge_all(CONCAT, K, None, rest)
        assert merge_all(CONCAT, K, head, [tail]) == whole


@settings(max_examples=150, deadline=None)
@given(
    existing=st.none() | _i64.map(enc),
    operands=st.lists(
        st.one_of(_i64, st.integers(-5, 5), st.sampled_from([I64_MAX, I64_MIN])).map(enc),
        min_size=1,
        max_size=10,
    ),
)
def test_counter_batch_equals_pairwise(existing: bytes | None, operands: list[bytes]) -> None:
    batch = _outcome(COUNTER, existing, operands)
    assert _outcome(PairwiseOnly(COUNTER), existing, operands) == batch
    total = 0 if existing is None else COUNTER.decode(existing)
    total += sum(COUNTER.decode(o) for o in operands)
    assert isinstance(batch, bytes)
    assert COUNTER.decode(batch) == (total + 2**63) % 2**64 - 2**63


@settings(max_examples=100, deadline=None)
@given(
    existing=st.none() | st.integers(-1000, 1000).map(enc),
    operands=st.lists(st.integers(-1000, 1000).map(enc), min_size=2, max_size=10),
    split=st.integers(1, 9),
)
def test_counter_associative_in_range(
    existing: bytes | None, operands: list[bytes], split: int
) -> None:
    split = min(split, len(operands) - 1)
    whole = merge_all(COUNTER, K, existing, operands)
    tail = merge_all(COUNTER, K, None, operands[split:])
    assert merge_all(COUNTER, K, existing, [*operands[:split], tail]) == whole


# --------------------------------------------------------------------------------------------
# The plugin hook.


def test_hookimpl_directly() -> None:
    assert shale_merge_operator("concat") == ConcatMergeOperator()
    assert shale_merge_operator("counter") == CounterMergeOperator()
    assert shale_merge_operator("nope") is None


def test_plugin_host_offers_builtins() -> None:
    host = PluginHost(autoload=False)
    assert "shale.merge_operators" in host.plugin_names()
    assert "shale.merge_operators" not in host.failed
    concat = host.merge_operator("concat")
    assert isinstance(concat, ConcatMergeOperator)
    assert isinstance(host.merge_operator("counter"), CounterMergeOperator)
    assert host.merge_operator("no-such-operator") is None
    assert merge_all(concat, K, b"a", [b"b"]) == b"ab"


def test_plugin_can_add_an_operator() -> None:
    import shale

    class Max:
        name = "max"

        def merge(self, key: bytes, existing: bytes | None, operand: bytes) -> bytes:
            return operand if existing is None else max(existing, operand)

    class Plugin:
        @shale.hookimpl
        def shale_merge_operator(self, name: str) -> object:
            return Max() if name == "max" else None

    host = PluginHost(autoload=False)
    host.register(Plugin(), name="max-plugin")
    op = host.merge_operator("max")
    assert merge_all(op, K, b"b", [b"a", b"c", b"b"]) == b"c"
    assert isinstance(host.merge_operator("concat"), ConcatMergeOperator)
