"""One environment serves both engines: the official slatedb package and S3Store share a bucket."""

from __future__ import annotations

import asyncio

import pytest

from shale.objstore.protocol import ObjectAlreadyExists
from shale_minio import S3Store
from shale_minio.testing import SeaweedServer

pytestmark = pytest.mark.interop


async def _write_with_slatedb(bucket: str) -> None:
    import slatedb.uniffi as s

    store = s.ObjectStore.resolve(f"s3://{bucket}")
    settings = s.Settings.default()
    settings.set("garbage_collector_options", "null")
    settings.set("compactor_options", "null")
    builder = s.DbBuilder("db1", store)
    builder.with_settings(settings)
    db = await asyncio.wait_for(builder.build(), 30.0)
    try:
        await db.put(b"key", b"value")
        await db.flush()
    finally:
        await asyncio.wait_for(db.shutdown(), 30.0)


def test_official_slatedb_writes_shale_reads(
    monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedServer
) -> None:
    pytest.importorskip("slatedb.uniffi")
    bucket = s3_server.make_bucket()
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    asyncio.run(_write_with_slatedb(bucket))
    with S3Store.from_url(f"s3://{bucket}/db1") as store:  # same env, no options
        keys = [m.key for m in store.list()]
        manifests = [k for k in keys if k.startswith("manifest/")]
        assert manifests, keys
        assert any(k.startswith("wal/") for k in keys), keys
        data = store.get(manifests[-1])
        assert len(data) == store.head(manifests[-1]).size > 0
        with pytest.raises(ObjectAlreadyExists):  # shale cannot overwrite slatedb's manifest
            store.put_if_absent(manifests[-1], b"not a manifest")
