"""The compaction kernel's twins (``shale.sst._compact_py`` / ``_compact_c``): the same SSTs,
byte for byte, from the same sources -- V1 and V2 source blocks, compressed sources read
``plain``, window bounds, resume skipping, retention settings, split points, bloom filters from
key hashes -- and the same errors."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest

from shale import _accel
from shale.errors import DataError, InvalidError
from shale.objstore.memory import MemoryStore
from shale.sst import SsTable, SstBuilder
from shale.sst.filters import BloomFilterPolicy

Row = tuple[Any, ...]
TWINS = _accel.twins("compact")
BLOCK = 512


def test_both_twins_are_built() -> None:
    assert "py" in TWINS
    if "c" in TWINS:
        assert TWINS["c"].__all__ == TWINS["py"].__all__
    if _accel.is_compiled("block"):
        assert "c" in TWINS


def random_rows(rng: random.Random, n: int, seqs: list[int]) -> list[Row]:
    rows = []
    for i in sorted(rng.sample(range(400), n)):
        key = b"key%04d" % i + b"-" * rng.choice([0, 0, 9])
        for _ in range(rng.choice([1, 1, 2, 4])):
            kind = rng.choice([0, 0, 0, 1])
            value = b"" if kind == 1 else rng.randbytes(rng.choice([0, 10, 100, 700]))
            rows.append(
                (
                    key,
                    seqs.pop(),
                    kind,
                    value,
                    rng.choice([None, None, 3, 30]),
                    rng.choice([None, 11]),
                )
            )
    rows.sort(key=lambda r: (r[0], -r[1]))
    return rows


def table(store: MemoryStore, name: str, rows: list[Row], **kw: Any) -> SsTable:
    b = SstBuilder(block_size=BLOCK, **kw)
    b.add_rows(rows)
    store.put(name, b.finish())
    return SsTable.open(store, name)


def source(t: SsTable, start: bytes | None = None, end: bytes | None = None) -> Any:
    it = t.scan_windows(start, end, window=3 * BLOCK, plain=True)
    return lambda: next(it, None)


def compact(mod: ModuleType, tables: list[Any], max_size: int, **kw: Any) -> list[bytes]:
    bounds = kw.pop("bounds", None) or [(None, None)] * len(tables)
    kernel = mod.Kernel(
        [source(t, *b) for t, b in zip(tables, bounds, strict=True)],
        block_size=BLOCK,
        hash_keys=True,
        **kw,
    )
    out = []

    def builder() -> SstBuilder:
        return SstBuilder(
            block_size=BLOCK, filter_policies=[BloomFilterPolicy(10)], min_filter_keys=5
        )

    b = builder()
    parts: list[bytes] = []
    while True:
        rc = kernel.run(b.writer, max_size, 2 * BLOCK)
        if rc == mod.RUN_SPLIT or (rc == mod.RUN_DONE and len(b)):
            parts += b.finish_parts(key_hashes=kernel.finish_sst(b.writer))
            out.append(b"".join(parts))
            if rc == mod.RUN_DONE:
                break
            b = builder()
            parts = []
        elif rc == mod.RUN_DONE:
            break
        else:
            parts += b.take_parts()  # as a streamed output does
    return out


def sources(seed: int) -> tuple[MemoryStore, list[SsTable]]:
    rng = random.Random(seed)
    store = MemoryStore()
    seqs = list(range(1, 10_000))
    rng.shuffle(seqs)
    kinds: list[dict[str, Any]] = [{}, {"version": 1}, {"compression": "zlib"}, {}]
    tables = [
        table(store, f"s{i}", random_rows(rng, rng.randint(1, 150), seqs), **kw)
        for i, kw in enumerate(kinds)
    ]
    return store, tables


CASES = [
    {},
    {"retention_min_seq": 5000},
    {"retention_min_seq": 0, "filter_tombstones": True, "compaction_clock_tick": 10},
    {"compaction_clock_tick": 100, "filter_tombstones": True},
    {"bounds": [(b"key0100", b"key0300"), (None, b"key0200"), (b"key0050", None), (None, None)]},
]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("case", CASES)
def test_twins_write_the_same_ssts(seed: int, case: dict[str, Any]) -> None:
    if "c" not in TWINS:
        pytest.skip("compiled twin not built")
    _, tables = sources(seed)
    for max_size in (1 << 30, 3000):
        want = compact(TWINS["py"], tables, max_size, **dict(case))
        got = compact(TWINS["c"], tables, max_size, **dict(case))
        assert got == want
    assert len(want) > 1


@pytest.mark.parametrize("name", sorted(TWINS))
def test_rows_are_the_merged_newest_versions(name: str) -> None:
    _, tables = sources(9)
    store = MemoryStore()
    ssts = compact(TWINS[name], tables, 2500)
    rows = []
    for i, data in enumerate(ssts):
        store.put(f"o{i}", data)
        rows += SsTable.open(store, f"o{i}").rows()
    newest: dict[bytes, Row] = {}
    for t in tables:
        for r in t.rows():
            if r[0] not in newest or r[1] > newest[r[0]][1]:
                newest[r[0]] = r
    assert [r[:4] for r in rows] == [newest[k][:4] for k in sorted(newest)]


@pytest.mark.parametrize("name", sorted(TWINS))
def test_resume_skips_the_written_rows(name: str) -> None:
    store = MemoryStore()
    rows = [
        (b"a", 9, 0, b"1", None, None),
        (b"b", 8, 0, b"2", None, None),
        (b"b", 7, 0, b"3", None, None),
        (b"c", 6, 0, b"4", None, None),
    ]
    t = table(store, "t", rows)
    mod = TWINS[name]
    kernel = mod.Kernel([source(t, b"b")], block_size=BLOCK, retention_min_seq=0, resume=(b"b", 8))
    b = SstBuilder(block_size=BLOCK, filter_policies=[])
    assert kernel.run(b.writer, 1 << 30, 1 << 20) == mod.RUN_DONE
    assert kernel.finish_sst(b.writer) is None
    store.put("o", b.finish())
    assert [r[:2] for r in SsTable.open(store, "o").rows()] == [(b"b", 7), (b"c", 6)]


@pytest.mark.parametrize("name", sorted(TWINS))
def test_errors(name: str) -> None:
    mod = TWINS[name]
    store = MemoryStore()
    t = table(store, "m", [(b"a", 1, 2, b"operand", None, None)])
    kernel = mod.Kernel([source(t)], block_size=BLOCK)
    with pytest.raises(InvalidError, match="merge operator missing"):
        kernel.run(SstBuilder(block_size=BLOCK).writer, 1 << 30, 1 << 20)
    t = table(store, "x", [(b"k%03d" % i, i + 1, 0, b"v" * 40, None, None) for i in range(50)])
    data, offsets, version, start, end, first = next(t.scan_windows())
    bad = bytearray(data)
    bad[10] ^= 1
    windows = iter([(bytes(bad), offsets, version, start, end, first)])
    kernel = mod.Kernel([lambda: next(windows, None)], block_size=BLOCK)
    with pytest.raises(DataError, match="checksum mismatch"):
        kernel.run(SstBuilder(block_size=BLOCK).writer, 1 << 30, 1 << 20)


def test_kernel_crc32_is_zlibs() -> None:
    """The compiled twin's CRC-32 (PCLMULQDQ folding where the CPU has it) is zlib's, for
    every length around the 16- and 64-byte steps and a few large ones."""
    if "c" not in TWINS:
        pytest.skip("compiled twin not built")
    import zlib

    crc32 = TWINS["c"].crc32
    rng = random.Random(5)
    for n in [*range(0, 300), 4095, 4096, 4097, 65_549, 1 << 20]:
        data = rng.randbytes(n)
        for start in (0, 0x12345678):
            assert crc32(data, start) == zlib.crc32(data, start), n


@pytest.mark.parametrize("name", sorted(_accel.twins("blockmeta")))
def test_index_add_packed_is_add_block(name: str) -> None:
    """The kernel hands its index entries over packed (``u64le offset || u32le length ||
    key``); both index builders encode them as one ``add_block`` each."""
    import struct

    mod = _accel.twins("blockmeta")[name]
    entries = [(0, b""), (4100, b"k1"), (2**40, b"key-" * 20), (2**63, b"z")]
    packed = b"".join(struct.pack("<QI", o, len(k)) + k for o, k in entries)
    a, b = mod.IndexBuilder(), mod.IndexBuilder()
    a.add_packed(packed)
    for o, k in entries:
        b.add_block(o, k)
    assert a.finish() == b.finish()
    with pytest.raises(InvalidError, match="truncated"):
        mod.IndexBuilder().add_packed(packed[:-1])
