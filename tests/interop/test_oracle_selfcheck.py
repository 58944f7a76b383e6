"""Self-checks of the oracle fixtures: the official databases have the shapes conftest claims.

These tests use only the official package's own view (Admin manifests, WAL reader, DbReader) and
the file listing, never shale, so a failure here means the fixture is wrong, not shale.

Recorded 0.17.0 behaviour worth knowing (FORMAT.md 11.3 says otherwise, see
``test_reads_do_not_apply_ttl``): the read path does **not** filter expired rows. Expiry only
takes effect when a flush or a compaction rewrites a row, with the flush's clock being the
memtable's last tick (the largest ``create_ts`` written to it), not the wall clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

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


def test_every_shape_is_generated(official_dbs):
    assert set(official_dbs) == set(SHAPES)
    for name, db in official_dbs.items():
        assert db.name == name
        assert db.db_path == "db"
        assert db.root == db.store_dir / "db"
        for sub in ("manifest", "wal"):
            assert (db.root / sub).is_dir(), (name, sub)
        assert db.manifest_files(), name
        assert db.expected, name


def test_manifest_listing_matches_files(official_dbs):
    for name, db in official_dbs.items():
        m = db.manifest
        ids = [int(p.stem) for p in db.manifest_files()]
        assert ids == m.manifest_ids, name
        assert m.id == ids[-1]
        assert db.latest_manifest_path().name == f"{m.id:020d}.manifest"
        assert m.writer_epoch == 1, name
        # every SST the latest manifest references exists
        referenced = list(m.l0) + [sst for _, run in m.compacted for sst in run]
        for sst_id in referenced:
            assert db.compacted_path(sst_id).is_file(), (name, sst_id)
        # WAL: a zero-length fence first, then consecutive ids
        wal_ids = [int(p.stem) for p in db.wal_files()]
        assert wal_ids == list(range(1, len(wal_ids) + 1)), name
        assert db.wal_path(1).stat().st_size == 0, name
        assert m.next_wal_sst_id == wal_ids[-1] + 1, name
        # wal_rows covers exactly the non-empty WAL files
        non_empty = {int(p.stem) for p in db.wal_files() if p.stat().st_size > 0}
        assert set(db.wal_rows) == non_empty, name


def test_scan_equals_gets(official_dbs):
    for name, db in official_dbs.items():
        present = sorted((k, v) for k, v in db.expected.items() if v is not None)
        assert db.scan == present, name
        assert set(db.key_values) == {k for k, _ in present}, name


def test_wal_rows_are_shale_row_tuples(official_dbs):
    for name, db in official_dbs.items():
        last_seq = 0
        for wal_id in sorted(db.wal_rows):
            for row in db.wal_rows[wal_id]:
                key, seq, kind, value, expire_ts, create_ts = row
                assert isinstance(key, bytes) and key, (name, row)
                assert kind in (0, 1, 2)
                assert isinstance(value, bytes)
                if kind == 1:
                    assert value == b""
                assert create_ts is not None  # 0.17.0 stamps every row
                assert expire_ts is None or isinstance(expire_ts, int)
                assert seq >= last_seq, (name, wal_id, row)  # commit order across files
                last_seq = seq


def test_wal_tail_is_only_in_the_wal(official_dbs):
    """Keys of the final WAL-only phase have versions newer than ``last_l0_seq``."""
    for name, db in official_dbs.items():
        if not db.wal_only_keys:
            continue
        m = db.manifest
        live_wal = {
            row[0]
            for wal_id, rows in db.wal_rows.items()
            if wal_id > m.replay_after_wal_id
            for row in rows
            if row[1] > m.last_l0_seq
        }
        assert db.wal_only_keys <= live_wal, name


def test_mixed_shape(official_dbs):
    db = official_dbs["mixed"]
    m = db.manifest
    assert len(m.l0) == 3
    assert m.compacted == []
    assert db.merge_operator == "concat"
    assert db.codec is None and db.block_size == 4096
    e = db.expected
    assert e[b"m:base"] == b"base+op1+op2+walop"
    assert e[b"m:nobase"] == b"abc"
    assert e[b"m:deleted"] == b"fresh"
    assert e[b"m:expired-base"] == b"new"
    assert e[b"ttl:live-l0"] == b"lives-again"
    assert e[b"ttl:dead-l0"] is None  # the flush turned it into a tombstone
    assert e[b"ttl:short-mid"] is None
    assert e[b"k00000"] == b"wal-overwrite"
    assert e[b"k00002"] is None and e[b"k00004"] is None
    assert e[b"wal:1"] == b"only-in-wal"
    assert e[b"\x00wal"] == b""
    assert e[b"empty"] == b"now-full"
    assert e[b"big:1"] == bytes(range(256)) * 40
    assert e[b"big:2"] is None
    for key in (b"\x00", b"\xff", b"a\x00b", b"\x00\xff"):
        assert e[key] == b"bin:" + key
    assert sum(1 for k in e if k.startswith(b"P" * 200)) == 60
    assert len(e) > 1200


def test_reads_do_not_apply_ttl(official_dbs):
    """0.17.0 returns expired rows until a flush or compaction rewrites them (not FORMAT 11.3)."""
    db = official_dbs["mixed"]
    # a put with ExpireAt(1000) that only lives in the WAL is still returned ...
    assert db.expected[b"ttl:dead-wal"] == b"wal-dies"
    assert db.key_values[b"ttl:dead-wal"][2] == 1000
    # ... an expired merge operand in the WAL is still folded in ...
    assert db.expected[b"m:wal-only"] == b"w1deadw2"
    assert db.key_values[b"m:wal-only"][2] == 1000  # min expire_ts over the merged rows
    # ... and an L0 value whose 1 ms TTL ran out after the flush is still returned.
    assert db.expected[b"ttl:short-last"] == b"short"
    _seq, create_ts, expire_ts = db.key_values[b"ttl:short-last"]
    assert expire_ts == create_ts + 1


def test_codec_shapes(official_dbs):
    for codec in ("snappy", "zlib", "lz4", "zstd"):
        db = official_dbs[f"codec_{codec}"]
        assert db.codec == codec
        assert len(db.manifest.l0) == 2
        assert db.expected[b"m:base"] == b"base+op1+walop"
        assert db.expected[b"ttl:dead-wal"] == b"wal-dies"


def test_compacted_shape_has_a_sorted_run(official_dbs):
    db = official_dbs["compacted"]
    m = db.manifest
    assert len(m.compacted) == 1
    _run_id, ssts = m.compacted[0]
    assert len(ssts) >= 2  # the small max_sst_size split the run
    assert m.last_compacted_l0_sst_view_id is not None
    assert m.compactor_epoch >= 1
    assert m.checkpoints >= 1  # the 0.17.0 compactor's checkpoint
    assert list((db.root / "compactions").glob("*.compactions"))
    assert m.l0  # history above the run
    assert db.expected[b"m:counter"] == b"01234+l0+wal"
    assert db.expected[b"c000001"] == b"wal-tail"


def test_block1k_shape(official_dbs):
    db = official_dbs["block1k"]
    assert db.block_size == 1024
    assert len(db.manifest.l0) == 2
    assert db.expected[b"b-merge"] == b"xy"
    assert db.expected[b"b00000"] is None
    assert db.expected[b"b00001"] == b"v"


def test_walbig_has_multi_block_wal_files(official_dbs):
    db = official_dbs["walbig"]
    m = db.manifest
    assert m.l0 == [] and m.replay_after_wal_id == 0
    big = [p for p in db.wal_files() if p.stat().st_size > 3 * 65536]
    # a WAL block holds at most 65535 bytes (one oversized row excepted), so these files have
    # several blocks
    assert len(big) >= 3
    assert len(db.expected) > 4000
    assert all(len(rows) > 1000 for rows in db.wal_rows.values())


def test_generation_reads_did_not_touch_the_databases(official_dbs):
    # the generator compares listings around its reads; here: no checkpoint other than the
    # compactor's was added, i.e. no reader left one behind
    for name, db in official_dbs.items():
        expected = 1 if name == "compacted" else 0
        assert db.manifest.checkpoints == expected, name


def test_official_reader_reads_any_directory(official_dbs, official_reader):
    db = official_dbs["mixed"]
    keys = [b"m:base", b"k00000", b"k00002", b"ttl:dead-l0", b"\x00", b"absent-key"]
    before = {p: p.stat().st_size for p in db.root.rglob("*") if p.is_file()}
    got = official_reader.read(db.store_dir, keys, merge_operator="concat")
    after = {p: p.stat().st_size for p in db.root.rglob("*") if p.is_file()}
    assert before == after
    for key in keys:
        assert got.values[key] == db.expected.get(key), key
    assert got.key_values == {k: db.key_values[k] for k in keys if k in db.key_values}
    assert got.scan == db.scan
    assert official_reader.wal_rows(db.store_dir) == db.wal_rows
    assert official_reader.manifest(db.store_dir) == db.manifest


def test_official_reader_reports_failures(tmp_path: Path, official_reader):
    (tmp_path / "db").mkdir()
    with pytest.raises(official_reader.error):
        official_reader.read(tmp_path, [b"k"], timeout=20.0)
