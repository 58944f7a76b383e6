"""URL schemes, options and error mapping of shale-obstore, without a server (GCS and Azure
have no emulator installable here: these are the checks that run for them), plus the error
kinds a real SeaweedFS produces (missing bucket, bad credentials) and a refused connection."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from obstore import exceptions as E

from shale.spi import (
    InvalidError,
    ObjectAlreadyExists,
    ObjectNotFound,
    PermanentStoreError,
    TransientStoreError,
    open_store,
)
from shale_minio import S3Store
from shale_minio.testing import SeaweedServer
from shale_obstore import ObstoreStore, parse_url, resolve_config
from shale_obstore.errors import map_error


@pytest.mark.parametrize(
    ("url", "provider", "root", "bucket", "prefix"),
    [
        ("gs://bkt", "gcs", "gs://bkt", "bkt", ""),
        ("gs://bkt/", "gcs", "gs://bkt", "bkt", ""),
        ("gs://bkt/a/b/", "gcs", "gs://bkt", "bkt", "a/b/"),
        ("GS://bkt/db%201", "gcs", "gs://bkt", "bkt", "db 1/"),
        ("az://cont/db", "azure", "az://cont", "cont", "db/"),
        ("azure://cont/db", "azure", "azure://cont", "cont", "db/"),
        ("abfs://cont/db", "azure", "abfs://cont", "cont", "db/"),
        (
            "abfss://cont@acct.dfs.core.windows.net/x/y",
            "azure",
            "abfss://cont@acct.dfs.core.windows.net",
            "cont",
            "x/y/",
        ),
        ("s3+obstore://bucket/p", "s3", "s3://bucket", "bucket", "p/"),
    ],
)
def test_parse_url(url: str, provider: str, root: str, bucket: str, prefix: str) -> None:
    parsed = parse_url(url)
    assert parsed is not None
    assert (parsed.provider, parsed.root_url, parsed.bucket, parsed.prefix) == (
        provider,
        root,
        bucket,
        prefix,
    )


@pytest.mark.parametrize("url", ["s3://b/p", "file:///tmp/x", "/tmp/x", "memory://m", "http://h/b"])
def test_other_schemes_are_not_ours(url: str) -> None:
    assert parse_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "gs://",
        "gs:///prefix",
        "gs://user:secret@bkt/p",
        "az://cont:443/p",
        "gs://bkt/p?x=1",
        "gs://bkt/p#f",
        "gs://bkt/a/../b",
        "gs://bkt/a//b",
        "az://cont@evil.example.com/p",
        "abfs://cont:key@acct.dfs.core.windows.net/p",
    ],
)
def test_bad_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidError) as info:
        parse_url(url)
    assert "secret" not in str(info.value) and ":key@" not in str(info.value)


def test_options_are_checked_before_any_request() -> None:
    with pytest.raises(InvalidError):
        resolve_config("gs://bkt", max_retries=-1)
    with pytest.raises(InvalidError):
        resolve_config("gs://bkt", retry_timeout=0)
    with pytest.raises(InvalidError):
        resolve_config("gs://bkt", client_options="fast")
    with pytest.raises(InvalidError):
        resolve_config("gs://bkt", credential_provider="not callable")
    with pytest.raises(InvalidError):
        resolve_config("s3+obstore://b", access_key="a", access_key_id="b")
    with pytest.raises(InvalidError):
        resolve_config("s3://b")
    # obstore rejects keys it does not know for the store: still before any request
    with pytest.raises(InvalidError, match="configuration"):
        ObstoreStore("gs://bkt", no_such_key="x")
    with pytest.raises(InvalidError):
        ObstoreStore("az://cont", account_name="acct", bucket_typo=1)


def test_s3_aliases_and_http_endpoint() -> None:
    config = resolve_config(
        "s3+obstore://b/p", endpoint="http://127.0.0.1:9", access_key="AK", secret_key="SK"
    )
    assert config.config["access_key_id"] == "AK"
    assert config.config["secret_access_key"] == "SK"
    assert config.client_options["allow_http"] is True
    assert "SK" not in repr(config) and "AK" not in repr(config)


def test_gcs_and_azure_stores_build_without_network(tmp_path: Any) -> None:
    gcs = open_store("gs://bkt/db", skip_signature=True, max_retries=0)
    assert isinstance(gcs, ObstoreStore)
    assert (gcs.provider, gcs.bucket, gcs.prefix) == ("gcs", "bkt", "db/")
    parent = gcs.enclosing_store()
    assert parent is not None and parent.prefix == "" and parent.client is gcs.client
    azure = open_store(
        "abfss://cont@acct.dfs.core.windows.net/x", skip_signature=True, max_retries=0
    )
    assert isinstance(azure, ObstoreStore)
    assert (azure.provider, azure.bucket, azure.prefix) == ("azure", "cont", "x/")
    az = open_store("az://cont/x", account_name="acct", use_emulator=True)
    assert isinstance(az, ObstoreStore) and az.provider == "azure"


def test_plain_s3_stays_shale_minio(s3_server: SeaweedServer) -> None:
    store = open_store("s3://anybucket/p", **s3_server.options())
    assert isinstance(store, S3Store)
    store.close()


def _status_error(status: int) -> E.GenericError:
    return E.GenericError(
        f"Generic S3 error: Error performing GET http://h/b/k in 1ms - Server returned "
        f"non-2xx status code: {status} Whatever: <Error/>\n\nDebug source: ..."
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (
            FileNotFoundError("Object at location k not found: ... <Code>NoSuchKey</Code>"),
            ObjectNotFound,
        ),
        (FileNotFoundError("... <Code>NoSuchBucket</Code> ..."), PermanentStoreError),
        (FileNotFoundError("... ContainerNotFound ..."), PermanentStoreError),
        (E.AlreadyExistsError("exists"), ObjectAlreadyExists),
        (E.PreconditionError("412"), ObjectAlreadyExists),
        (E.PermissionDeniedError("403"), PermanentStoreError),
        (E.UnauthenticatedError("401"), PermanentStoreError),
        (E.NotSupportedError("no"), PermanentStoreError),
        (_status_error(503), TransientStoreError),
        (_status_error(500), TransientStoreError),
        (_status_error(429), TransientStoreError),
        (_status_error(408), TransientStoreError),
        (_status_error(400), PermanentStoreError),
        (_status_error(404), ObjectNotFound),
        (_status_error(412), ObjectAlreadyExists),
        (E.GenericError("HTTP error: error sending request"), TransientStoreError),
        (E.GenericError("Error getting credentials from IMDS"), PermanentStoreError),
        (TimeoutError("slow"), TransientStoreError),
        (ConnectionResetError("reset"), TransientStoreError),
    ],
)
def test_error_mapping(exc: BaseException, kind: type[BaseException]) -> None:
    mapped = map_error(exc, "get", "k", "b")
    assert isinstance(mapped, kind), mapped
    assert "Debug source" not in str(mapped)


def test_programming_errors_pass_through() -> None:
    exc = KeyError("x")
    assert map_error(exc, "get", "k", "b") is exc


def test_missing_bucket_is_permanent(obstore_options: Any) -> None:
    store = ObstoreStore("s3+obstore://no-such-bucket-xyz/p", **obstore_options())
    for call in (
        lambda: store.put("k", b"x"),
        lambda: store.put_if_absent("k", b"x"),
        lambda: store.get("k"),
        lambda: list(store.list()),
    ):
        with pytest.raises(PermanentStoreError):
            call()


def test_bad_credentials_are_permanent(
    s3_server: SeaweedServer, obstore_bucket: str, obstore_options: Any
) -> None:
    options = obstore_options(secret_key="wrong-secret")
    store = ObstoreStore(f"s3+obstore://{obstore_bucket}/p", **options)
    with pytest.raises(PermanentStoreError) as info:
        store.put("k", b"x")
    assert "wrong-secret" not in str(info.value)
    with pytest.raises(PermanentStoreError):
        store.get("k")


def test_refused_connection_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ObstoreStore(
        "s3+obstore://b/p",
        endpoint=f"http://127.0.0.1:{port}",
        access_key="a",
        secret_key="b",
        region="us-east-1",
        max_retries=1,
        retry_base_delay=0.01,
    )
    with pytest.raises(TransientStoreError):
        store.get("k")
    with pytest.raises(TransientStoreError):
        store.put_if_absent("k", b"x")
