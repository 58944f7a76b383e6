"""A clone opened at its own S3 prefix finds its parent one prefix up (shale.meta.locator).

The layout the official package makes in a bucket: ``dbs/parent`` and ``dbs/clone`` side by
side, the clone's ``external_dbs`` naming ``dbs/parent`` relative to the bucket's root. shale
opens the clone on a store whose prefix *is* ``dbs/clone/``; its enclosing stores lead back to
the parent.
"""

from __future__ import annotations

import dataclasses
import uuid

from shale import Db, Settings
from shale.fbs.manifest import ExternalDb, encode_manifest
from shale.ids import manifest_path
from shale.meta.manifest_store import ManifestStore, StoredManifest
from shale_minio import S3Store
from shale_minio.testing import SeaweedServer

SETTINGS = Settings(
    flush_interval=0.01,
    manifest_poll_interval=0.05,
    compactor_options=None,
    garbage_collector_options=None,
)


def test_clone_at_its_own_prefix_reads_the_parent(
    s3_server: SeaweedServer, s3_store: S3Store
) -> None:
    expected = {}
    with Db.open("dbs/parent", SETTINGS, object_store=s3_store) as db:
        for r in range(2):
            for i in range(50):
                db.put(b"k%03d" % i, b"r%d-%d" % (r, i))
                expected[b"k%03d" % i] = b"r%d-%d" % (r, i)
            db.flush(memtable=True)
    m = StoredManifest.load(ManifestStore(s3_store, "dbs/parent")).manifest
    ids = [v.sst.id for v in m.l0]
    clone = dataclasses.replace(
        m,
        checkpoints=[],
        external_dbs=[ExternalDb("dbs/parent", uuid.uuid4(), uuid.uuid4(), ids)],
    )
    s3_store.put(manifest_path("dbs/clone", 1), encode_manifest(clone))

    at_clone = s3_server.store(s3_store.bucket, s3_store.prefix + "dbs/clone")
    try:
        with Db.open("", SETTINGS, object_store=at_clone) as db:
            assert dict(db.scan()) == expected
            assert db.get(b"k007") == b"r1-7"
    finally:
        at_clone.close()
