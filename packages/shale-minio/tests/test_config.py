"""Settings of the S3 store: URL, keyword options, AWS_* environment; no server needed."""

from __future__ import annotations

import logging
import traceback

import pytest

from shale.errors import InvalidError
from shale.objstore.protocol import TransientStoreError
from shale_minio import S3Store, parse_s3_url, resolve_config
from shale_minio.config import DEFAULT_REGION, OPTIONS

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEXAMPLE-session-token-value"

FULL_ENV = {
    "AWS_ENDPOINT": "http://127.0.0.1:8333",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_SESSION_TOKEN": TOKEN,
    "AWS_REGION": "eu-west-3",
    "AWS_ALLOW_HTTP": "true",
}


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/db1", ("bucket", "db1/")),
        ("s3://bucket/db1/", ("bucket", "db1/")),
        ("s3://bucket//a/b//", ("bucket", "a/b/")),
        ("S3://bucket/a%20b", ("bucket", "a b/")),
        ("s3://my.bucket-1/x", ("my.bucket-1", "x/")),
    ],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["memory://", "file:///tmp/x", "/tmp/x", "gs://b", "relative"])
def test_parse_other_schemes_is_none(url: str) -> None:
    assert parse_s3_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://bucket:9000/x",
        "s3://bucket/x?versionId=1",
        "s3://bucket/x#frag",
        "s3://bucket/a/../b",
        "s3://bucket/./b",
    ],
)
def test_parse_bad_s3_urls(url: str) -> None:
    with pytest.raises(InvalidError):
        parse_s3_url(url)


def test_url_with_credentials_is_rejected_without_echoing_them() -> None:
    with pytest.raises(InvalidError) as info:
        parse_s3_url(f"s3://AKIAEXAMPLE:{SECRET}@bucket/p")
    assert SECRET not in str(info.value)
    assert "***@bucket" in str(info.value)


# -- environment and options -----------------------------------------------------------------


def test_env_supplies_everything() -> None:
    cfg = resolve_config("bucket", "db", env=FULL_ENV)
    assert cfg.host == "127.0.0.1:8333"
    assert cfg.secure is False
    assert cfg.endpoint == "http://127.0.0.1:8333"
    assert (cfg.access_key, cfg.secret_key, cfg.session_token) == ("AKIAEXAMPLE", SECRET, TOKEN)
    assert cfg.region == "eu-west-3"
    assert cfg.prefix == "db/"


def test_options_win_over_env() -> None:
    cfg = resolve_config(
        "bucket",
        env=FULL_ENV,
        endpoint="https://s3.example.com",
        access_key="other",
        secret_key="other-secret",
        region="ap-south-1",
    )
    assert cfg.secure is True
    assert cfg.host == "s3.example.com"
    assert (cfg.access_key, cfg.secret_key) == ("other", "other-secret")
    assert cfg.region == "ap-south-1"
    assert cfg.session_token == TOKEN  # not overridden


def test_defaults_without_env() -> None:
    cfg = resolve_config("bucket", env={})
    assert cfg.host == "s3.amazonaws.com"
    assert cfg.secure is True
    assert cfg.region == DEFAULT_REGION
    assert cfg.access_key is None and cfg.secret_key is None
    assert cfg.prefix == ""


def test_endpoint_url_wins_over_endpoint() -> None:
    env = {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT": "http://b:2"}
    assert resolve_config("bucket", env=env).host == "a:1"
    assert resolve_config("bucket", env={"AWS_ENDPOINT": "http://b:2"}).host == "b:2"


def test_region_fallbacks() -> None:
    assert resolve_config("bkt", env={"AWS_DEFAULT_REGION": "x-1"}).region == "x-1"
    env = {"AWS_DEFAULT_REGION": "x-1", "AWS_REGION": "y-2"}
    assert resolve_config("bkt", env=env).region == "y-2"


@pytest.mark.parametrize(
    ("endpoint", "allow_http", "secure", "expected"),
    [
        ("minio:9000", "true", None, False),
        ("minio:9000", "", None, True),
        ("minio:9000", "false", None, True),
        ("minio:9000", "", False, False),
        ("minio:9000", "true", True, True),
        ("http://minio:9000", "", None, False),
        ("https://minio:9000", "true", None, True),
        ("http://minio:9000/", "", False, False),
    ],
)
def test_secure_resolution(
    endpoint: str, allow_http: str, secure: bool | None, expected: bool
) -> None:
    env = {"AWS_ALLOW_HTTP": allow_http}
    assert resolve_config("bkt", env=env, endpoint=endpoint, secure=secure).secure is expected


def test_secure_contradicting_scheme() -> None:
    with pytest.raises(InvalidError):
        resolve_config("bkt", env={}, endpoint="http://minio:9000", secure=True)


@pytest.mark.parametrize(
    "endpoint", ["", "ftp://x", "http://host/path", "http://user:pw@host", "http://", ":9000"]
)
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(InvalidError):
        resolve_config("bkt", env={}, endpoint=endpoint)


def test_bad_allow_http_value() -> None:
    with pytest.raises(InvalidError):
        resolve_config("bkt", env={"AWS_ALLOW_HTTP": "maybe"}, endpoint="minio:9000")


@pytest.mark.parametrize("bucket", ["", "a", "-dash-first", "192.168.1.1", "a..b", "a/b"])
def test_bad_bucket_names(bucket: str) -> None:
    with pytest.raises(InvalidError):
        resolve_config(bucket, env={})


def test_key_pairs_must_be_complete() -> None:
    with pytest.raises(InvalidError):
        resolve_config("bucket", env={"AWS_ACCESS_KEY_ID": "AKIA"})
    with pytest.raises(InvalidError) as info:
        resolve_config("bucket", env={"AWS_SECRET_ACCESS_KEY": SECRET})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", 0),
        ("timeout", "10"),
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("max_retries", True),
        ("pool_size", 0),
        ("part_size", 1 << 20),
        ("multipart_threshold", 100),
        ("secure", "yes"),
        ("create_bucket", 1),
        ("list_page_size", 1001),
        ("retry_base_delay", -1),
        ("secret_key", 12345),
    ],
)
def test_bad_option_values(name: str, value: object) -> None:
    with pytest.raises(InvalidError):
        resolve_config("bucket", env={}, **{name: value})


def test_unknown_option() -> None:
    with pytest.raises(InvalidError) as info:
        resolve_config("bucket", env={}, fsync=False)
    assert "fsync" in str(info.value)


def test_options_constant_matches_store_signature() -> None:
    import inspect

    params = set(inspect.signature(S3Store).parameters) - {"bucket", "prefix", "env"}
    assert params == OPTIONS


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_not_in_repr() -> None:
    cfg = resolve_config("bucket", "db", env=FULL_ENV)
    store = S3Store.from_config(cfg)
    try:
        for text in (repr(cfg), str(cfg), repr(store), str(store)):
            assert SECRET not in text
            assert TOKEN not in text
            assert "AKIAEXAMPLE" not in text
        assert "bucket" in repr(store) and "http://127.0.0.1:8333" in repr(store)
        assert cfg.access_key_hint == "AKIA…"
    finally:
        store.close()


def test_secrets_not_in_errors_or_logs(caplog: pytest.LogCaptureFixture, unused_port: int) -> None:
    env = dict(FULL_ENV, AWS_ENDPOINT=f"http://127.0.0.1:{unused_port}")
    store = S3Store("bucket", env=env, max_retries=2, retry_base_delay=0.001)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(TransientStoreError) as info:
            store.get("k")
    finally:
        store.close()
    rendered = "".join(traceback.format_exception(info.value))
    for text in (rendered, caplog.text, repr(info.value)):
        assert SECRET not in text
        assert TOKEN not in text


# -- the plugin ------------------------------------------------------------------------------


def test_hook_ignores_other_schemes() -> None:
    from shale_minio.plugin import shale_open_object_store

    assert shale_open_object_store(url="memory://", options={}) is None
    assert shale_open_object_store(url="/tmp/x", options={"fsync": False}) is None


def test_hook_opens_s3_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    from shale_minio.plugin import shale_open_object_store

    for name, value in FULL_ENV.items():
        monkeypatch.setenv(name, value)
    store = shale_open_object_store(url="s3://bucket/db1", options={"max_retries": 1})
    assert isinstance(store, S3Store)
    try:
        assert (store.bucket, store.prefix, store.endpoint) == (
            "bucket",
            "db1/",
            "http://127.0.0.1:8333",
        )
        assert store.config.max_retries == 1
    finally:
        store.close()
    with pytest.raises(InvalidError):
        shale_open_object_store(url="s3://bucket/db1", options={"fsync": True})


def test_plugin_host_routes_s3_to_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    from shale.plugins import PluginHost

    for name, value in FULL_ENV.items():
        monkeypatch.setenv(name, value)
    host = PluginHost(autoload=True)
    assert "shale_minio" in host.plugin_names()
    store = host.open_object_store("s3://bucket/x", {"region": "us-west-2"})
    try:
        assert isinstance(store, S3Store)
        assert store.config.region == "us-west-2"
    finally:
        store.close()
