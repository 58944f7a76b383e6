"""ObstoreStore (``s3+obstore://``) passes the object-store contract against a real SeaweedFS.

The same suite, tuned the same way, as shale-minio's ``test_contract.py``. Two contract tests
assume etags change on every write; S3 etags are the MD5 of the body, so an overwrite with
identical bytes keeps its etag (AWS S3 behaves the same): they are replaced by tests pinning the
S3 behaviour, exactly as shale-minio does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shale.objstore.protocol import ObjectAlreadyExists
from shale.testing.objstore_contract import ObjectStoreContract
from shale_obstore import ObstoreStore


class TestObstoreS3Contract(ObjectStoreContract):
    race_rounds = 3
    race_seconds = 0.3
    race_object_size = 256 << 10
    large_size = 5 << 20

    @pytest.fixture
    def store(self, obstore_s3_store: ObstoreStore) -> Iterator[ObstoreStore]:
        yield obstore_s3_store

    def test_etag_changes_on_every_overwrite(self, store: ObstoreStore) -> None:  # type: ignore[override]
        store.put("e", b"same bytes")
        first = store.head("e").etag
        store.put("e", b"same bytes")
        assert store.head("e").etag == first  # content-addressed: identical bytes, same etag
        store.put("e", b"other bytes")
        assert store.head("e").etag != first

    def test_put_if_match_same_content_overwrite_still_fails(  # type: ignore[override]
        self, store: ObstoreStore
    ) -> None:
        store.put("c", b"same")
        etag = store.head("c").etag
        assert etag is not None
        store.put("c", b"same")
        store.put_if_match("c", b"new", etag)  # S3 compares content hashes: still matches
        assert store.get("c") == b"new"
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_match("c", b"newer", etag)
