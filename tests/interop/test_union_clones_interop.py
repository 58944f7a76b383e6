"""Union clones across packages: the official ``slatedb`` 0.17 ``CloneBuilder`` given several
sources (``create_clone_builder_from_source`` then ``with_source``) makes a union shale opens,
reads and writes; shale's ``Admin.clone(target, sources=...)`` makes one the official reader
reads alike.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shale import Admin, Db, Settings
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale.objstore.local import LocalStore

pytestmark = pytest.mark.interop

SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)
KEYS = [b"k%04d" % i for i in range(300)]

_OFFICIAL_UNION = """
import asyncio, sys
import slatedb.uniffi as s

def spec(arg):
    path, _, rest = arg.partition("=")
    rng = None
    if rest:
        lo, hi = (bytes.fromhex(x) for x in rest.split(":"))
        rng = s.KeyRange(start=lo, start_inclusive=True, end=hi, end_inclusive=False)
    return s.CloneSourceSpec(path=path, checkpoint=None, projection_range=rng)

async def main(store_dir, target, sources):
    store = s.ObjectStoreBuilder.from_url("file://" + store_dir).build()
    first = spec(sources[0])
    builder = s.AdminBuilder(first.path, store).build().create_clone_builder_from_source(first)
    for arg in sources[1:]:
        builder.with_source(spec(arg))
    builder.with_clone_path(target)
    await asyncio.wait_for(builder.build(), 30)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
"""


def _official_union(store: Path, target: str, *sources: str) -> None:
    cmd = [sys.executable, "-c", _OFFICIAL_UNION, str(store.resolve()), target, *sources]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


def _shards(store: Path) -> dict[bytes, bytes]:
    """Three shale-written shards: ``a`` (keys < 100), ``b`` (100..199), ``c`` (every key,
    to be projected), each with two L0s."""
    local = LocalStore(store)
    expected: dict[bytes, bytes] = {}
    for name, keys in (("a", KEYS[:100]), ("b", KEYS[100:200]), ("c", KEYS)):
        with Db.open(f"dbs/{name}", SETTINGS, object_store=local) as db:
            for r in range(2):
                for k in keys[r::2]:
                    db.put(k, b"%s-%d-" % (name.encode(), r) + k)
                db.flush(memtable=True)
    for name, keys in (("a", KEYS[:100]), ("b", KEYS[100:200]), ("c", KEYS[200:])):
        for i, k in enumerate(keys):
            expected[k] = b"%s-%d-" % (name.encode(), i % 2) + k
    return expected


def _manifest(store: Path, path: str) -> Any:
    return StoredManifest.load(ManifestStore(LocalStore(store), path)).manifest


def test_shale_reads_and_writes_an_official_union(official_reader: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    expected = _shards(store)
    _official_union(store, "dbs/o_u", "dbs/a", "dbs/b", "dbs/c=6b30323030:6b30333030")
    m = _manifest(store, "dbs/o_u")
    assert m.initialized and [e.path for e in m.external_dbs] == ["dbs/a", "dbs/b", "dbs/c"]
    official = official_reader.read(store, KEYS, db_path="dbs/o_u")
    assert official.values == expected
    local = LocalStore(store)
    with Db.open("dbs/o_u", SETTINGS, object_store=local) as db:
        assert list(db.scan()) == official.scan
        got = {k: db.get_key_value(k) for k in KEYS}
        assert {k: (kv.seq, kv.create_ts, kv.expire_ts) for k, kv in got.items() if kv} == (
            official.key_values
        )
        db.put(b"k0005", b"shale")
        db.flush(memtable=True)
    assert official_reader.read(store, [b"k0005"], db_path="dbs/o_u").values[b"k0005"] == b"shale"
    # shale's retry of the same union recognises the official clone
    again = Admin("dbs/a", settings=SETTINGS, object_store=local).clone(
        "dbs/o_u", sources=["dbs/a", "dbs/b", ("dbs/c", None, (b"k0200", b"k0300"))]
    )
    assert not again.created


def test_official_reads_a_shale_union_like_its_own(official_reader: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    expected = _shards(store)
    local = LocalStore(store)
    _official_union(store, "dbs/o_u", "dbs/a", "dbs/b", "dbs/c=6b30323030:6b30333030")
    Admin("dbs/a", settings=SETTINGS, object_store=local).clone(
        "dbs/s_u", sources=["dbs/a", "dbs/b", ("dbs/c", None, (b"k0200", b"k0300"))]
    )
    s, o = _manifest(store, "dbs/s_u"), _manifest(store, "dbs/o_u")
    assert [e.path for e in s.external_dbs] == [e.path for e in o.external_dbs]
    assert [sorted(e.sst_ids) for e in s.external_dbs] == [
        sorted(e.sst_ids) for e in o.external_dbs
    ]
    assert (len(s.l0), [r.id for r in s.compacted], s.last_l0_seq, s.wal_id_last_seen) == (
        len(o.l0),
        [r.id for r in o.compacted],
        o.last_l0_seq,
        o.wal_id_last_seen,
    )
    shale_read = official_reader.read(store, KEYS, db_path="dbs/s_u")
    assert shale_read == official_reader.read(store, KEYS, db_path="dbs/o_u")
    assert shale_read.values == expected
