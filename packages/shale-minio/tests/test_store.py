"""S3Store beyond the contract: error mapping, retries, lost replies, multipart, listing pages.

Most tests run against the real SeaweedFS server (fixtures ``s3_server``/``s3_store`` from
:mod:`shale_minio.testing`); exact failure sequences come from the scripted ``fake_s3``
endpoint of ``conftest.py``.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

from shale.objstore.protocol import (
    ObjectAlreadyExists,
    ObjectNotFound,
    PermanentStoreError,
    TransientStoreError,
)
from shale_minio import PUT_ID_HEADER, S3Store
from shale_minio.testing import SeaweedServer

MiB = 1 << 20


def _fake_store(fake: Any, **options: Any) -> S3Store:
    store = S3Store(
        "bucket",
        endpoint=fake.endpoint,
        access_key="AKIAFAKE",
        secret_key="fake-secret",
        env={},
        **{"retry_base_delay": 0.001, **options},
    )
    return store


def _record_sleeps(store: S3Store) -> list[float]:
    sleeps: list[float] = []
    store._sleep = sleeps.append
    return sleeps


def _reset() -> urllib3.exceptions.ProtocolError:
    return urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
    )


def _lose_first_reply(
    monkeypatch: pytest.MonkeyPatch,
    store: S3Store,
    *,
    perform: bool = True,
    meanwhile: Callable[[], None] | None = None,
    failures: int = 1,
) -> dict[str, int]:
    """Make the first ``failures`` PUTs raise a connection reset; ``perform`` them first."""
    real = store._client._put_object
    calls = {"n": 0}

    def put(
        bucket: str, name: str, data: bytes, headers: Any = None, query_params: Any = None
    ) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            if perform:
                real(bucket, name, data, headers=dict(headers or {}), query_params=query_params)
            if meanwhile is not None:
                meanwhile()
            raise _reset()
        return real(bucket, name, data, headers=headers, query_params=query_params)

    monkeypatch.setattr(store._client, "_put_object", put)
    return calls


# -- error mapping against the real server ---------------------------------------------------


def test_not_found_is_not_retried(s3_store: S3Store) -> None:
    sleeps = _record_sleeps(s3_store)
    for call in (
        lambda: s3_store.get("nope"),
        lambda: s3_store.head("nope"),
        lambda: s3_store.get_range("nope", 0, 5),
    ):
        with pytest.raises(ObjectNotFound):
            call()
    assert sleeps == []


def test_precondition_failures_are_not_retried(s3_store: S3Store) -> None:
    sleeps = _record_sleeps(s3_store)
    s3_store.put_if_absent("k", b"1")
    with pytest.raises(ObjectAlreadyExists) as info:
        s3_store.put_if_absent("k", b"2")
    assert info.value.detail.get("status") == 412
    with pytest.raises(ObjectAlreadyExists):
        s3_store.put_if_match("missing", b"2", "0" * 32)  # SeaweedFS: 412, AWS: 404
    assert sleeps == []
    assert s3_store.get("k") == b"1"


def test_wrong_credentials_are_permanent(s3_server: SeaweedServer, s3_store: S3Store) -> None:
    s3_store.put("k", b"v")
    bad = S3Store(
        s3_store.bucket,
        s3_store.prefix,
        **{**s3_server.options(), "secret_key": "definitely-wrong-secret"},
    )
    sleeps = _record_sleeps(bad)
    try:
        for call in (
            lambda: bad.get("k"),
            lambda: bad.head("k"),
            lambda: bad.put("k", b"x"),
            lambda: bad.put_if_absent("new", b"x"),
            lambda: list(bad.list()),
            lambda: bad.delete("k"),
        ):
            with pytest.raises(PermanentStoreError) as info:
                call()
            assert info.value.detail.get("status") == 403
            assert "definitely-wrong-secret" not in str(info.value)
            assert s3_server.secret_key not in str(info.value)
    finally:
        bad.close()
    assert sleeps == []
    assert s3_store.get("k") == b"v"


def test_missing_bucket_is_permanent(s3_server: SeaweedServer) -> None:
    store = s3_server.store("no-such-bucket-here")
    sleeps = _record_sleeps(store)
    try:
        for call in (
            lambda: store.get("k"),
            lambda: store.put("k", b"x"),
            lambda: store.put_if_absent("k", b"x"),
            lambda: list(store.list()),
        ):
            with pytest.raises(PermanentStoreError) as info:
                call()
            assert info.value.detail.get("code") == "NoSuchBucket"
        # HEAD responses have no body, so a missing bucket looks like a missing key there.
        with pytest.raises(ObjectNotFound):
            store.head("k")
    finally:
        store.close()
    assert sleeps == []


def test_create_bucket_option(s3_server: SeaweedServer) -> None:
    name = f"created-{random.randrange(1 << 30)}"
    with s3_server.store(name, create_bucket=True) as store:
        store.put("a", b"1")
    with s3_server.store(name, create_bucket=True) as again:  # already there: fine
        assert again.get("a") == b"1"


# -- lost replies of conditional puts (real server) --------------------------------------------


def test_put_if_absent_lost_reply_resolves_to_success(
    monkeypatch: pytest.MonkeyPatch, s3_store: S3Store
) -> None:
    sleeps = _record_sleeps(s3_store)
    calls = _lose_first_reply(monkeypatch, s3_store)
    s3_store.put_if_absent("manifest/1", b"ours")
    assert calls["n"] == 2  # the retry got 412 for our own write, then the read-back decided
    assert len(sleeps) == 1
    assert s3_store.get("manifest/1") == b"ours"


def test_put_if_absent_lost_reply_then_someone_elses_identical_bytes(
    monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedServer, s3_store: S3Store
) -> None:
    other = s3_server.store(s3_store.bucket, s3_store.prefix)
    _record_sleeps(s3_store)
    # Our PUT never reached the server; meanwhile another writer created the key with the
    # very same bytes. Comparing bytes would call that ours; the put id says it is not.
    _lose_first_reply(
        monkeypatch,
        s3_store,
        perform=False,
        meanwhile=lambda: other.put_if_absent("manifest/2", b"same bytes"),
    )
    try:
        with pytest.raises(ObjectAlreadyExists):
            s3_store.put_if_absent("manifest/2", b"same bytes")
    finally:
        other.close()


def test_put_if_absent_lost_reply_then_someone_elses_bytes(
    monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedServer, s3_store: S3Store
) -> None:
    other = s3_server.store(s3_store.bucket, s3_store.prefix)
    _record_sleeps(s3_store)
    _lose_first_reply(
        monkeypatch,
        s3_store,
        perform=False,
        meanwhile=lambda: other.put_if_absent("manifest/3", b"theirs"),
    )
    try:
        with pytest.raises(ObjectAlreadyExists):
            s3_store.put_if_absent("manifest/3", b"ours")
    finally:
        other.close()
    assert s3_store.get("manifest/3") == b"theirs"


def test_put_if_absent_failure_that_never_landed_is_retried(
    monkeypatch: pytest.MonkeyPatch, s3_store: S3Store
) -> None:
    _record_sleeps(s3_store)
    calls = _lose_first_reply(monkeypatch, s3_store, perform=False, failures=2)
    s3_store.put_if_absent("wal/1", b"ours")
    assert calls["n"] == 3
    assert s3_store.get("wal/1") == b"ours"


def test_put_if_absent_out_of_retries_still_checks(
    monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedServer, s3_store: S3Store
) -> None:
    store = s3_server.store(s3_store.bucket, s3_store.prefix, max_retries=0)
    try:
        _lose_first_reply(monkeypatch, store)
        store.put_if_absent("k", b"ours")  # no retry left, but the read-back finds our id
        _lose_first_reply(monkeypatch, store, perform=False)
        with pytest.raises(TransientStoreError):
            store.put_if_absent("k2", b"ours")  # never landed, nothing to find: unknown
        with pytest.raises(ObjectNotFound):
            store.get("k2")
    finally:
        store.close()


def test_put_if_match_lost_reply_resolves_to_success(
    monkeypatch: pytest.MonkeyPatch, s3_store: S3Store
) -> None:
    _record_sleeps(s3_store)
    s3_store.put("cas", b"v1")
    etag = s3_store.head("cas").etag
    assert etag is not None
    _lose_first_reply(monkeypatch, s3_store)
    s3_store.put_if_match("cas", b"v2", etag)
    assert s3_store.get("cas") == b"v2"


def test_put_if_match_lost_reply_then_overwritten(
    monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedServer, s3_store: S3Store
) -> None:
    other = s3_server.store(s3_store.bucket, s3_store.prefix)
    _record_sleeps(s3_store)
    s3_store.put("cas", b"v1")
    etag = s3_store.head("cas").etag
    assert etag is not None
    _lose_first_reply(
        monkeypatch, s3_store, perform=False, meanwhile=lambda: other.put("cas", b"theirs")
    )
    try:
        with pytest.raises(ObjectAlreadyExists):
            s3_store.put_if_match("cas", b"v2", etag)
    finally:
        other.close()
    assert s3_store.get("cas") == b"theirs"


def test_every_put_carries_a_put_id(s3_store: S3Store) -> None:
    s3_store.put("a", b"1")
    s3_store.put_if_absent("b", b"2")
    ids = set()
    for key in ("a", "b"):
        stat = s3_store._client.stat_object(s3_store.bucket, s3_store.prefix + key)
        ids.add(stat.metadata.get(PUT_ID_HEADER))
    assert len(ids) == 2 and None not in ids


# -- multipart -------------------------------------------------------------------------------


def test_multipart_round_trip_40_mib(s3_store: S3Store) -> None:
    data = random.Random(40).randbytes(40 * MiB)
    s3_store.put("big/40mib.bin", data)
    meta = s3_store.head("big/40mib.bin")
    assert meta.size == len(data)
    assert meta.etag is not None and meta.etag.endswith("-3")  # 16 + 16 + 8 MiB
    assert s3_store.get("big/40mib.bin") == data
    edge = 16 * MiB
    assert s3_store.get_range("big/40mib.bin", edge - 5, edge + 5) == data[edge - 5 : edge + 5]
    assert [m.key for m in s3_store.list("big/")] == ["big/40mib.bin"]


def test_multipart_etag_is_md5_of_part_md5s(s3_server: SeaweedServer, s3_store: S3Store) -> None:
    with s3_server.store(
        s3_store.bucket, s3_store.prefix, multipart_threshold=5 * MiB, part_size=5 * MiB
    ) as store:
        data = random.Random(1).randbytes(11 * MiB)
        store.put("mp", data)
        digests = b"".join(
            hashlib.md5(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)
        )
        assert store.head("mp").etag == hashlib.md5(digests).hexdigest() + "-3"
        assert store.get("mp") == data


def test_conditional_multipart(s3_server: SeaweedServer, s3_store: S3Store) -> None:
    with s3_server.store(s3_store.bucket, s3_store.prefix, part_size=5 * MiB) as store:
        store._single_put_limit = 5 * MiB  # force the >5 GiB path with small data
        first = random.Random(2).randbytes(6 * MiB)
        second = random.Random(3).randbytes(6 * MiB)
        store.put_if_absent("mp", first)
        assert store.head("mp").etag.endswith("-2")  # type: ignore[union-attr]
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_absent("mp", second)
        assert store.get("mp") == first
        etag = store.head("mp").etag
        assert etag is not None
        store.put_if_match("mp", second, etag)
        assert store.get("mp") == second
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_match("mp", first, etag)
        assert store.get("mp") == second
        uploads = list(
            store._client._list_multipart_uploads(store.bucket, prefix=store.prefix).uploads
        )
        assert uploads == []  # the failed ones were aborted


def test_multipart_part_failure_is_retried(
    monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedServer, s3_store: S3Store
) -> None:
    with s3_server.store(
        s3_store.bucket, s3_store.prefix, multipart_threshold=5 * MiB, part_size=5 * MiB
    ) as store:
        sleeps = _record_sleeps(store)
        real = store._client._upload_part
        failed: list[int] = []

        def upload_part(*args: Any) -> Any:
            if args[-1] == 2 and not failed:
                failed.append(2)
                raise _reset()
            return real(*args)

        monkeypatch.setattr(store._client, "_upload_part", upload_part)
        data = random.Random(4).randbytes(12 * MiB)
        store.put("mp", data)
        assert failed == [2] and len(sleeps) == 1
        assert store.get("mp") == data


# -- listing ---------------------------------------------------------------------------------


def test_list_paginates_and_sorts(s3_server: SeaweedServer, s3_store: S3Store) -> None:
    keys = [f"d{d}/{i:03d}" for d in range(3) for i in range(9)] + ["d1-x", "d1.y", "d0/sub/z"]
    for key in keys:
        s3_store.put(key, b"x")
    with s3_server.store(s3_store.bucket, s3_store.prefix, list_page_size=4) as store:
        assert [m.key for m in store.list()] == sorted(keys)
        assert [m.key for m in store.list("d1")] == sorted(k for k in keys if k.startswith("d1"))


def test_list_skips_names_that_are_not_keys(fake_s3: Any) -> None:
    # SeaweedFS normalizes such names (a\\b -> a/b), so this needs the scripted endpoint.
    def entry(name: str) -> str:
        return (
            f"<Contents><Key>{name}</Key><LastModified>2026-11-21T11:56:36.000Z</LastModified>"
            '<ETag>"e"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>'
        )

    names = ["p/zz", "p/a//b", "p/dir/", "p/back\\slash", "p/./x", "p/aa", "other/x"]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
        'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>p/</Prefix>'
        f"<KeyCount>{len(names)}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
        + "".join(entry(n) for n in names)
        + "</ListBucketResult>"
    ).encode()
    fake_s3.default = (200, {"Content-Type": "application/xml"}, body)
    store = S3Store(
        "bucket", "p", endpoint=fake_s3.endpoint, access_key="a", secret_key="s", env={}
    )
    try:
        metas = list(store.list())
    finally:
        store.close()
    assert [m.key for m in metas] == ["aa", "zz"]
    assert metas[0].etag == "e" and metas[0].size == 1
    assert "prefix=p%2F" in fake_s3.requests[0].path


def test_head_reports_epoch_seconds(s3_store: S3Store) -> None:
    before = time.time()
    s3_store.put("t", b"12345")
    meta = s3_store.head("t")
    assert isinstance(meta.last_modified, float)
    assert before - 5 <= meta.last_modified <= time.time() + 5
    assert meta.size == 5
    assert meta.etag == hashlib.md5(b"12345").hexdigest()


def test_open_store_through_the_plugin_host(s3_server: SeaweedServer, s3_store: S3Store) -> None:
    from shale.plugins import PluginHost

    store = PluginHost(autoload=True).open_object_store(
        f"s3://{s3_store.bucket}/{s3_store.prefix}", s3_server.options()
    )
    try:
        assert isinstance(store, S3Store)
        store.put("via-url", b"ok")
        assert s3_store.get("via-url") == b"ok"
    finally:
        store.close()


def test_env_configures_the_store(
    monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedServer, s3_store: S3Store
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    with S3Store.from_url(f"s3://{s3_store.bucket}/{s3_store.prefix}") as store:
        store.put("via-env", b"ok")
        assert s3_store.get("via-env") == b"ok"


# -- retries (closed port, scripted endpoint) ------------------------------------------------


def test_closed_port_is_transient_after_bounded_retries(unused_port: int) -> None:
    store = S3Store(
        "bucket",
        endpoint=f"http://127.0.0.1:{unused_port}",
        access_key="a",
        secret_key="s",
        max_retries=3,
        retry_base_delay=0.001,
        env={},
    )
    sleeps = _record_sleeps(store)
    start = time.monotonic()
    try:
        with pytest.raises(TransientStoreError) as info:
            store.put_if_absent("k", b"x")
    finally:
        store.close()
    assert len(sleeps) == 3  # 1 attempt + 3 retries (the final read-back failed too)
    assert time.monotonic() - start < 5
    assert info.value.detail["key"] == "k"


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    store = S3Store(
        "bucket",
        endpoint="http://127.0.0.1:1",
        retry_base_delay=0.1,
        retry_max_delay=0.5,
        env={},
    )
    try:
        for attempt, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.5), (9, 0.5)]:
            delays = [store._delay(attempt) for _ in range(50)]
            assert all(cap / 2 <= d <= cap for d in delays)
            assert len(set(delays)) > 1
    finally:
        store.close()


def test_throttling_is_retried_then_succeeds(fake_s3: Any) -> None:
    fake_s3.script = [
        fake_s3.error(503, "SlowDown"),
        fake_s3.error(429, "TooManyRequests"),
        (200, {"Content-Type": "application/octet-stream"}, b"payload"),
    ]
    store = _fake_store(fake_s3, max_retries=5)
    sleeps = _record_sleeps(store)
    try:
        assert store.get("k") == b"payload"
    finally:
        store.close()
    assert fake_s3.methods() == ["GET"] * 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "reply_factory",
    [
        lambda f: f.error(500, "InternalError"),
        lambda f: f.error(503, "ServiceUnavailable"),
        lambda f: (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"),
        lambda f: f.error(400, "RequestTimeout"),
        lambda f: "drop",
    ],
    ids=["500", "503", "502-html", "400-RequestTimeout", "dropped"],
)
def test_transient_replies_are_retried_by_the_store_only(fake_s3: Any, reply_factory: Any) -> None:
    fake_s3.default = reply_factory(fake_s3)
    store = _fake_store(fake_s3, max_retries=2)
    sleeps = _record_sleeps(store)
    try:
        with pytest.raises(TransientStoreError):
            store.put("k", b"x")
    finally:
        store.close()
    # exactly 1 + max_retries requests: the SDK's own urllib3 retries are off
    assert fake_s3.methods() == ["PUT"] * 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("reply", "status"),
    [(("AccessDenied", 403)), ("InvalidArgument", 400), ("MethodNotAllowed", 405)],
)
def test_client_errors_are_permanent_and_not_retried(fake_s3: Any, reply: str, status: int) -> None:
    fake_s3.default = fake_s3.error(status, reply)
    store = _fake_store(fake_s3, max_retries=3)
    sleeps = _record_sleeps(store)
    try:
        with pytest.raises(PermanentStoreError) as info:
            store.get("k")
    finally:
        store.close()
    assert info.value.detail["code"] == reply
    assert fake_s3.methods() == ["GET"]
    assert sleeps == []


def test_conditional_headers_on_the_wire(fake_s3: Any) -> None:
    store = _fake_store(fake_s3)
    try:
        store.put_if_absent("a", b"1")
        store.put_if_match("b", b"2", "abc123")
        store.put_if_match("c", b"3", '"quoted"')
        store.put("d", b"4")
    finally:
        store.close()
    headers = [r.headers for r in fake_s3.requests]
    assert headers[0]["if-none-match"] == "*"
    assert headers[1]["if-match"] == '"abc123"'
    assert headers[2]["if-match"] == '"quoted"'
    assert "if-none-match" not in headers[3] and "if-match" not in headers[3]
    for h in headers:
        assert not any(name.startswith("x-amz-meta-if") for name in h)
        assert h[PUT_ID_HEADER]
    assert fake_s3.requests[0].path == "/bucket/a"


def test_first_412_is_final_without_read_back(fake_s3: Any) -> None:
    fake_s3.default = fake_s3.error(412, "PreconditionFailed")
    store = _fake_store(fake_s3)
    try:
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_absent("k", b"x")
    finally:
        store.close()
    assert fake_s3.methods() == ["PUT"]


def test_412_after_a_dropped_attempt_reads_back_the_put_id(fake_s3: Any) -> None:
    ours = {
        PUT_ID_HEADER: "our-put-id",
        "ETag": '"e"',
        "Last-Modified": "Sat, 21 Nov 2026 11:56:36 GMT",
    }
    theirs = dict(ours, **{PUT_ID_HEADER: "their-put-id"})
    fake_s3.script = ["drop", fake_s3.error(412, "PreconditionFailed"), (200, ours, b"")]
    store = _fake_store(fake_s3)
    _record_sleeps(store)
    store._new_put_id = lambda: "our-put-id"
    try:
        store.put_if_absent("k", b"x")
        assert fake_s3.methods() == ["PUT", "PUT", "HEAD"]
        fake_s3.requests.clear()
        fake_s3.script = ["drop", fake_s3.error(412, "PreconditionFailed"), (200, theirs, b"")]
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_absent("k", b"x")
        fake_s3.requests.clear()
        no_id = {k: v for k, v in ours.items() if k != PUT_ID_HEADER}
        fake_s3.script = ["drop", fake_s3.error(412, "PreconditionFailed"), (200, no_id, b"")]
        with pytest.raises(ObjectAlreadyExists):
            store.put_if_absent("k", b"x")  # no id: cannot prove it is ours
    finally:
        store.close()


def test_read_timeout_is_transient_and_quick(fake_s3: Any) -> None:
    fake_s3.default = ("hang", 2.0)
    store = _fake_store(fake_s3, timeout=0.2, max_retries=1)
    _record_sleeps(store)
    start = time.monotonic()
    try:
        with pytest.raises(TransientStoreError):
            store.get("k")
    finally:
        store.close()
    assert time.monotonic() - start < 1.5
    assert fake_s3.methods() == ["GET", "GET"]


def test_garbage_etag_fails_without_a_request(fake_s3: Any) -> None:
    store = _fake_store(fake_s3)
    try:
        for etag in ("", '""', "bad\r\nInjected: 1", "caf\u00e9"):
            with pytest.raises(ObjectAlreadyExists):
                store.put_if_match("k", b"x", etag)
    finally:
        store.close()
    assert fake_s3.requests == []


def test_enclosing_store_walks_up_the_prefix() -> None:
    """A clone at ``s3://bucket/dbs/clone`` finds ``dbs/parent`` through the enclosing stores
    (shale.meta.locator); no request is made."""
    store = S3Store(
        "bucket",
        "dbs/clone",
        endpoint="http://127.0.0.1:9",
        access_key="AKIAFAKE",
        secret_key="fake-secret",
        env={},
    )
    chain = [store]
    while (up := chain[-1].enclosing_store()) is not None:
        chain.append(up)
    try:
        assert [s.prefix for s in chain] == ["dbs/clone/", "dbs/", ""]
        assert all(s.bucket == "bucket" and s.endpoint == store.endpoint for s in chain)
        assert all(s.config.access_key == "AKIAFAKE" for s in chain)
    finally:
        for s in chain:
            s.close()
