"""Golden tests: shale's SST reader and builder against SSTs the official slatedb 0.17.0 wrote.

For every database in the ``official_dbs`` fixture (tests/interop/conftest.py):

* every WAL and compacted SST decodes, every checksum verifies, and the decoded metadata is
  consistent with the rows (FORMAT.md 3.6, 3.10-3.12);
* WAL SST rows equal what the official ``SlateDbWalReader`` returns;
* each compacted SST with >= 1000 rows carries the ``_bf`` filter, which contains every key;
* rebuilding an SST from its decoded rows with :class:`shale.sst.SstBuilder` reproduces the file
  byte-for-byte for uncompressed, Snappy and Zstd SSTs (FORMAT.md 13); for LZ4 and Zlib, whose
  compressed bytes differ from Rust's, the rebuilt SST decodes to the same rows and blocks;
* range and reverse iteration of compacted SSTs agree with the full row list;
* every single-bit flip of a real SST is reported as :class:`shale.errors.DataError`;
* resolving every key from the latest manifest, the live WAL files, the L0s and the sorted runs
  (FORMAT.md 11.3) gives exactly what the official ``DbReader`` returned.

TTL note for the resolution test: the official 0.17.0 read path does **not** hide expired rows
(see tests/interop/test_oracle_selfcheck.py::test_reads_do_not_apply_ttl). Expiry happens only
when a flush or compaction rewrites a row, and those rewrites are already in the files, so the
resolver below applies no read-time expiry. FORMAT.md 11.3's "``expire_ts <= now`` acts like a
tombstone" rule would disagree with the oracle on WAL-resident and late-expiring L0 rows.
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.interop

sst_mod = pytest.importorskip("shale.sst")
SsTable = sst_mod.SsTable
SstBuilder = sst_mod.SstBuilder
from shale.errors import DataError  # noqa: E402 -- after the importorskip guard

SHAPES = (
    "mixed",
    "codec_snappy",
    "codec_zlib",
    "codec_lz4",
    "codec_zstd",
    "compacted",
    "block1k",
    "walbig",
)
#: Shapes with compacted SSTs worth iterating (walbig has none).
COMPACTED_SHAPES = tuple(s for s in SHAPES if s != "walbig")
CODEC_IDS = {None: 0, "snappy": 1, "zlib": 2, "lz4": 3, "zstd": 4}
#: Codecs whose Python compressors reproduce Rust's bytes (FORMAT.md 3.3).
BYTE_EXACT_CODECS = {None, "snappy", "zstd"}
WAL_BLOCK_SIZE = 65535
MIN_FILTER_KEYS = 1000
VALUE, TOMBSTONE, MERGE = 0, 1, 2

Row = tuple  # (key, seq, kind, value, expire_ts, create_ts)


@dataclass
class Sst:
    """One decoded SST object of an official database."""

    path: Path
    wal_id: int | None  # None for compacted SSTs
    data: bytes
    table: Any
    rows: list[Row]

    @property
    def is_wal(self) -> bool:
        return self.wal_id is not None


def _decode(path: Path, wal_id: int | None) -> Sst:
    data = path.read_bytes()
    table = SsTable.from_bytes(data)
    return Sst(path, wal_id, data, table, [tuple(r) for r in table.iter_rows()])


@pytest.fixture(scope="module")
def decoded(official_dbs) -> dict[str, list[Sst]]:
    """Every non-empty SST of every official database, decoded once: WAL files first (id order),
    then compacted files (ULID order)."""
    out: dict[str, list[Sst]] = {}
    for name, db in official_dbs.items():
        ssts = [_decode(p, int(p.stem)) for p in db.wal_files() if p.stat().st_size > 0]
        ssts += [_decode(p, None) for p in db.compacted_files()]
        out[name] = ssts
    return out


def _compacted(ssts: list[Sst]) -> list[Sst]:
    return [s for s in ssts if not s.is_wal]


# ------------------------------------------------------------------------------------------
# Decoding and metadata
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHAPES)
def test_every_sst_decodes(name, official_dbs, decoded):
    db = official_dbs[name]
    ssts = decoded[name]
    assert any(s.is_wal for s in ssts)
    if name != "walbig":
        assert _compacted(ssts)
    for s in ssts:
        t = s.table
        info = t.info
        where = s.path.name
        assert s.rows, where
        assert t.is_wal == s.is_wal, where
        assert t.compression == CODEC_IDS[db.codec], where
        assert info.compression_format == t.compression
        assert info.filter_format == 1, where  # composite, even without a filter
        assert t.block_count >= 1
        for key, _seq, kind, value, expire_ts, create_ts in s.rows:
            assert isinstance(key, bytes) and key
            assert kind in (VALUE, TOMBSTONE, MERGE)
            assert create_ts is not None, where  # 0.17.0 stamps every row
            if kind == TOMBSTONE:
                assert value == b"" and expire_ts is None
        if s.is_wal:
            assert info.sst_type == 1
            assert info.first_entry == struct.pack(">Q", s.rows[0][1]), where
            assert info.last_entry is None
            assert info.filter_len == 0 and info.stats_len == 0 and info.stats_offset == 0
            assert t.stats is None
            assert t.filter_names == []
            seqs = [r[1] for r in s.rows]
            assert seqs == sorted(seqs), where
        else:
            assert info.sst_type == 0
            order = [(r[0], -r[1]) for r in s.rows]
            assert order == sorted(order) and len(set(order)) == len(order), where
            assert info.first_entry == s.rows[0][0]
            assert info.last_entry == s.rows[-1][0]
            st = t.stats
            assert st is not None
            assert st.num_puts == sum(1 for r in s.rows if r[2] == VALUE)
            assert st.num_deletes == sum(1 for r in s.rows if r[2] == TOMBSTONE)
            assert st.num_merges == sum(1 for r in s.rows if r[2] == MERGE)
            assert st.raw_key_size == sum(len(r[0]) for r in s.rows)
            assert st.raw_val_size == sum(len(r[3]) for r in s.rows)
            assert len(st.block_stats) == t.block_count
            assert sum(b.num_puts for b in st.block_stats) == st.num_puts
            assert sum(b.num_deletes for b in st.block_stats) == st.num_deletes
            assert sum(b.num_merges for b in st.block_stats) == st.num_merges


@pytest.mark.parametrize("name", SHAPES)
def test_wal_rows_equal_the_official_wal_reader(name, official_dbs, decoded):
    db = official_dbs[name]
    ours = {s.wal_id: s.rows for s in decoded[name] if s.is_wal}
    assert set(ours) == set(db.wal_rows)
    for wal_id, rows in ours.items():
        assert rows == db.wal_rows[wal_id], f"wal {wal_id}"


def test_walbig_wal_ssts_have_several_blocks(decoded):
    blocks = [s.table.block_count for s in decoded["walbig"] if s.is_wal]
    assert sum(1 for n in blocks if n >= 3) >= 3, blocks


def test_block1k_uses_small_blocks(decoded):
    for s in _compacted(decoded["block1k"]):
        if len(s.rows) > 100:
            assert s.table.block_count > len(s.data) // 2048


# ------------------------------------------------------------------------------------------
# Filters and point lookups
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPACTED_SHAPES)
def test_filters_and_point_lookups(name, decoded):
    rng = random.Random(f"filters-{name}")
    filtered = 0
    for s in _compacted(decoded[name]):
        t = s.table
        keys = sorted({r[0] for r in s.rows})
        if len(s.rows) >= MIN_FILTER_KEYS:
            filtered += 1
            assert t.info.filter_len > 0, s.path.name
            assert t.filter_names == ["_bf"]
            assert all(t.may_contain(k) for k in keys)
            absent = [b"absent:%d" % i for i in range(2000)]
            false_positives = sum(1 for k in absent if t.may_contain(k))
            assert false_positives < 100, false_positives  # ~1% expected at 10 bits/key
        else:
            assert t.info.filter_len == 0, s.path.name
            assert t.filter_names == []
        by_key: dict[bytes, list[Row]] = defaultdict(list)
        for r in s.rows:
            by_key[r[0]].append(r)
        for k in rng.sample(keys, min(50, len(keys))):
            assert [tuple(r) for r in t.get_rows(k)] == by_key[k]
        for k in (b"absent:x", keys[0] + b"\x00", b"\x00" * 300, b"\xff" * 300):
            if k not in by_key:
                assert t.get_rows(k) == []
    assert filtered, f"{name} has no SST with a filter"


# ------------------------------------------------------------------------------------------
# Byte-exact rebuild
# ------------------------------------------------------------------------------------------


def _rebuild(s: Sst, codec: str | None, block_size: int) -> bytes:
    b = SstBuilder(
        wal=s.is_wal,
        block_size=WAL_BLOCK_SIZE if s.is_wal else block_size,
        compression=codec or "none",
    )
    for r in s.rows:
        b.add(r)
    return b.finish()


@pytest.mark.parametrize("name", SHAPES)
def test_rebuild_from_rows(name, official_dbs, decoded):
    db = official_dbs[name]
    for s in decoded[name]:
        rebuilt = _rebuild(s, db.codec, db.block_size)
        if db.codec in BYTE_EXACT_CODECS:
            if rebuilt != s.data:
                first = next(
                    (i for i, (a, b) in enumerate(zip(rebuilt, s.data, strict=False)) if a != b),
                    min(len(rebuilt), len(s.data)),
                )
                pytest.fail(
                    f"{s.path.name}: rebuilt SST differs at byte {first} "
                    f"(rebuilt {len(rebuilt)} bytes, official {len(s.data)})"
                )
        else:
            # LZ4/Zlib: Python's compressed bytes differ from Rust's; the layout must not.
            t = SsTable.from_bytes(rebuilt)
            assert [tuple(r) for r in t.iter_rows()] == s.rows, s.path.name
            assert t.block_count == s.table.block_count
            assert t.compression == s.table.compression
            assert t.info.first_entry == s.table.info.first_entry
            assert t.info.last_entry == s.table.info.last_entry
            assert (t.info.filter_len > 0) == (s.table.info.filter_len > 0)


# ------------------------------------------------------------------------------------------
# Range and reverse iteration
# ------------------------------------------------------------------------------------------


def _reverse_by_key(rows: list[Row]) -> list[Row]:
    """Keys descending; within one key the stored order (seq descending) is kept."""
    groups: list[list[Row]] = []
    for r in rows:
        if groups and groups[-1][0][0] == r[0]:
            groups[-1].append(r)
        else:
            groups.append([r])
    return [r for g in reversed(groups) for r in g]


def _bounds(keys: list[bytes], rng: random.Random) -> Iterable[tuple[bytes | None, bytes | None]]:
    yield None, None
    yield keys[0], None
    yield None, keys[-1]
    yield keys[-1], None
    yield b"\x00", b"\xff" * 4
    yield keys[-1] + b"\x00", None
    yield None, keys[0]
    for _ in range(40):
        pick = []
        for _ in range(2):
            k = rng.choice(keys)
            choice = rng.randrange(4)
            if choice == 1:
                k = k + b"\x00"  # just after an existing key
            elif choice == 2:
                k = k[: rng.randrange(1, len(k) + 1)]  # a prefix, often absent
            elif choice == 3:
                k = None
            pick.append(k)
        a, b = pick
        if a is not None and b is not None and a > b:
            a, b = b, a
        yield a, b


@pytest.mark.parametrize("name", COMPACTED_SHAPES)
def test_range_and_reverse_iteration(name, decoded):
    rng = random.Random(f"ranges-{name}")
    for s in _compacted(decoded[name])[:4]:
        t = s.table
        full = s.rows
        keys = sorted({r[0] for r in full})
        assert [tuple(r) for r in t.iter_rows(reverse=True)] == _reverse_by_key(full)
        for start, end in _bounds(keys, rng):
            want = [
                r for r in full if (start is None or r[0] >= start) and (end is None or r[0] < end)
            ]
            got = [tuple(r) for r in t.iter_rows(start, end)]
            assert got == want, (s.path.name, start, end)
            got_rev = [tuple(r) for r in t.iter_rows(start, end, reverse=True)]
            assert got_rev == _reverse_by_key(want), (s.path.name, start, end)


# ------------------------------------------------------------------------------------------
# Corruption
# ------------------------------------------------------------------------------------------


def _decode_fully(data: bytes) -> None:
    t = SsTable.from_bytes(data)
    list(t.iter_rows())
    t.stats  # noqa: B018 -- loads and checks the stats chunk
    t.filter_names  # noqa: B018 -- loads and checks the filter chunk
    t.may_contain(b"probe")


@pytest.mark.parametrize("name", SHAPES)
def test_single_bit_flips_raise_data_error(name, decoded):
    rng = random.Random(f"flips-{name}")
    ssts = decoded[name]
    picks = [next(s for s in ssts if s.is_wal)]
    picks += _compacted(ssts)[:1]
    for s in picks:
        data = s.data
        # every section: the first and last bytes, the footer, plus random positions
        positions = {0, len(data) - 1, len(data) - 2, len(data) - 10, s.table.info.index_offset}
        positions |= {rng.randrange(len(data)) for _ in range(24)}
        for pos in sorted(positions):
            bit = 1 << rng.randrange(8)
            corrupt = bytearray(data)
            corrupt[pos] ^= bit
            with pytest.raises(DataError):
                _decode_fully(bytes(corrupt))
    for cut in (0, 5, 10):
        with pytest.raises(DataError):
            SsTable.from_bytes(picks[0].data[:cut])


# ------------------------------------------------------------------------------------------
# Resolution against the official reader
# ------------------------------------------------------------------------------------------


def _resolve(versions: list[Row]) -> tuple[bytes, tuple[int, int, int | None]] | None:
    """The visible value of one key from all its versions (any order), FORMAT.md 11.3 without
    read-time expiry (what 0.17.0 does): newest first, merge operands folded oldest to newest
    onto the first value below them; a tombstone base, or no base, folds onto nothing."""
    versions = sorted(versions, key=lambda r: -r[1])
    operands: list[Row] = []
    base: Row | None = None
    for r in versions:
        if r[2] == MERGE:
            operands.append(r)
            continue
        base = r
        break
    if not operands:
        if base is None or base[2] == TOMBSTONE:
            return None
        return base[3], (base[1], base[5], base[4])
    merged = list(operands)
    acc: bytes | None = None
    if base is not None and base[2] == VALUE:
        acc = base[3]
        merged.append(base)
    for op in reversed(operands):
        acc = (acc or b"") + op[3]  # the fixtures' concatenating merge operator
    assert acc is not None
    create_ts = max(r[5] for r in merged)
    expire = [r[4] for r in merged if r[4] is not None]
    return acc, (operands[0][1], create_ts, min(expire) if expire else None)


def _visible(view: Any, rows: list[Row]) -> list[Row]:
    rng = getattr(view, "visible_range", None)
    if rng is None:
        return rows
    return [r for r in rows if rng.contains(r[0])]


@pytest.mark.parametrize("name", SHAPES)
def test_resolution_matches_official_reads(name, official_dbs, decoded):
    manifest_mod = pytest.importorskip("shale.fbs.manifest")
    db = official_dbs[name]
    _version, m = manifest_mod.decode_manifest(db.latest_manifest_path().read_bytes())
    assert not getattr(m, "segments", []), "segmented trees are not modelled here"
    by_path = {s.path.name: s for s in decoded[name]}

    versions: dict[bytes, list[Row]] = defaultdict(list)
    # 1. WAL files after replay_after_wal_id, skipping rows already in L0
    for s in decoded[name]:
        if s.is_wal and s.wal_id > m.replay_after_wal_id:
            for r in s.rows:
                if r[1] > m.last_l0_seq:
                    versions[r[0]].append(r)
    # 2. L0 views, 3. sorted runs (seqs order everything, so source order does not matter)
    views = list(m.l0) + [v for run in m.compacted for v in run.ssts]
    for view in views:
        s = by_path[f"{view.sst.id}.sst"]
        for r in _visible(view, s.rows):
            versions[r[0]].append(r)

    resolved = {k: _resolve(v) for k, v in versions.items()}
    assert set(resolved) <= set(db.expected), "rows for keys the generator never wrote"
    mismatches = []
    for key, want in db.expected.items():
        got = resolved.get(key)
        got_value = None if got is None else got[0]
        if got_value != want:
            mismatches.append((key, got_value, want))
        elif got is not None and got[1] != db.key_values[key]:
            mismatches.append((key, got[1], db.key_values[key]))
    assert not mismatches, f"{len(mismatches)} keys differ, first: {mismatches[:5]}"
    scan = sorted((k, v[0]) for k, v in resolved.items() if v is not None)
    assert scan == db.scan
