"""Where an :class:`~shale_minio.S3Store` gets its settings: the URL, keyword options, the env.

Precedence, highest first: keyword options, then the ``s3://bucket/prefix`` URL (bucket and
prefix only), then environment variables, then defaults. The environment variables are the ones
the official ``slatedb`` package (Rust ``object_store``'s ``AmazonS3Builder::from_env``) reads,
so one environment serves both engines:

==========================  ===============================================================
``AWS_ENDPOINT_URL``        endpoint, ``http://host:port`` or ``https://host`` (wins over
``AWS_ENDPOINT``            ``AWS_ENDPOINT``); absent means AWS S3 itself
``AWS_ACCESS_KEY_ID``       access key (no credentials at all means anonymous requests)
``AWS_SECRET_ACCESS_KEY``   secret key
``AWS_SESSION_TOKEN``       session token for temporary credentials
``AWS_REGION``              region (wins over ``AWS_DEFAULT_REGION``); default ``us-east-1``
``AWS_DEFAULT_REGION``
``AWS_ALLOW_HTTP``          ``true``: an endpoint without a scheme is spoken to over http
``AWS_CA_BUNDLE``           PEM file of CA certificates to trust for https
==========================  ===============================================================

The endpoint's scheme decides http versus https; ``secure=`` may state it too but must not
contradict the scheme. Unlike ``object_store``, an explicit ``http://`` endpoint does not also
need ``AWS_ALLOW_HTTP=true`` (setting it as well, as S3.md does, works for both engines).

Invariant: secrets (the secret key and the session token) never appear in ``repr``, log lines
or error messages. :class:`S3Config` keeps them in fields excluded from its ``repr``; the access
key id is shown only as its first four characters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from shale.spi import InvalidError, validate_key

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_REGION",
    "DEFAULT_TIMEOUT",
    "ENV_ACCESS_KEY_ID",
    "ENV_ALLOW_HTTP",
    "ENV_CA_BUNDLE",
    "ENV_DEFAULT_REGION",
    "ENV_ENDPOINT",
    "ENV_ENDPOINT_URL",
    "ENV_REGION",
    "ENV_SECRET_ACCESS_KEY",
    "ENV_SESSION_TOKEN",
    "OPTIONS",
    "S3Config",
    "parse_s3_url",
    "resolve_config",
]

#: Endpoint URL (AWS CLI's name); wins over :data:`ENV_ENDPOINT`.
ENV_ENDPOINT_URL = "AWS_ENDPOINT_URL"
#: Endpoint URL (``object_store``'s name).
ENV_ENDPOINT = "AWS_ENDPOINT"
#: Access key id.
ENV_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
#: Secret access key.
ENV_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
#: Session token of temporary credentials.
ENV_SESSION_TOKEN = "AWS_SESSION_TOKEN"
#: Region; wins over :data:`ENV_DEFAULT_REGION`.
ENV_REGION = "AWS_REGION"
#: Region (fallback).
ENV_DEFAULT_REGION = "AWS_DEFAULT_REGION"
#: ``true`` lets a scheme-less endpoint be spoken to over plain http.
ENV_ALLOW_HTTP = "AWS_ALLOW_HTTP"
#: A PEM bundle of CA certificates for https.
ENV_CA_BUNDLE = "AWS_CA_BUNDLE"

DEFAULT_REGION = "us-east-1"
#: Seconds to wait for a connection and for each read from the socket.
DEFAULT_TIMEOUT = 30.0
#: Retries of a transient failure (so at most ``1 + max_retries`` attempts).
DEFAULT_MAX_RETRIES = 5
#: Connections kept per host; size it to the number of threads doing I/O.
DEFAULT_POOL_SIZE = 32
#: Objects larger than this are uploaded in parts (unconditional puts).
DEFAULT_MULTIPART_THRESHOLD = 16 << 20
#: Size of each part of a multipart upload (S3's minimum is 5 MiB, except the last part).
DEFAULT_PART_SIZE = 16 << 20
#: First backoff delay and cap, in seconds (exponential with full jitter in between).
DEFAULT_RETRY_BASE_DELAY = 0.1
DEFAULT_RETRY_MAX_DELAY = 2.0
#: Keys per ListObjectsV2 page (S3's maximum is 1000).
DEFAULT_LIST_PAGE_SIZE = 1000

_MIN_PART_SIZE = 5 << 20
_AWS_HOST = "s3.amazonaws.com"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

#: Keyword options of :class:`~shale_minio.S3Store` (and of ``open_store("s3://...")``).
OPTIONS = frozenset(
    {
        "endpoint",
        "access_key",
        "secret_key",
        "session_token",
        "region",
        "secure",
        "ca_bundle",
        "timeout",
        "max_retries",
        "pool_size",
        "create_bucket",
        "multipart_threshold",
        "part_size",
        "retry_base_delay",
        "retry_max_delay",
        "list_page_size",
    }
)


@dataclass(frozen=True)
class S3Config:
    """Every setting of one S3 store, resolved. Secrets are excluded from ``repr``.

    :ivar bucket: the bucket name.
    :ivar prefix: the key prefix the store lives under: ``""`` or ending with ``/``.
    :ivar host: ``host[:port]`` of the endpoint (no scheme).
    :ivar secure: https when true.
    """

    bucket: str
    prefix: str
    host: str
    secure: bool
    region: str
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    pool_size: int = DEFAULT_POOL_SIZE
    create_bucket: bool = False
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    retry_base_delay: float = DEFAULT_RETRY_BASE_DELAY
    retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY
    list_page_size: int = DEFAULT_LIST_PAGE_SIZE

    @property
    def endpoint(self) -> str:
        """The endpoint as a URL, ``http://host:port`` or ``https://host``."""
        return ("https://" if self.secure else "http://") + self.host

    @property
    def access_key_hint(self) -> str | None:
        """The access key id shortened for logs (``AKIA…``), or ``None`` when anonymous."""
        if not self.access_key:
            return None
        return self.access_key[:4] + "…"


def _redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{tail}"


def _normalize_prefix(prefix: str, *, where: str) -> str:
    if not isinstance(prefix, str):
        raise InvalidError("s3 prefix must be a str", type=type(prefix).__name__)
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        validate_key(stripped)
    except InvalidError:
        raise InvalidError(
            "s3 prefix must be a relative /-separated path", prefix=prefix, source=where
        ) from None
    return stripped + "/"


def parse_s3_url(url: str) -> tuple[str, str] | None:
    """``(bucket, prefix)`` of an ``s3://bucket/optional/prefix`` URL; ``None`` for other schemes.

    The prefix is returned without leading slashes and with one trailing ``/`` (or ``""``).

    :raises InvalidError: an ``s3://`` URL with no bucket, credentials, a port, a query or a
        fragment, or a prefix with ``..``/``.``/empty segments.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str):
        return None
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() != "s3":
        return None
    shown = _redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidError("malformed s3 URL", url=shown) from None
    if "@" in parts.netloc:
        raise InvalidError(
            "s3 URLs take no credentials; use options or AWS_* environment variables", url=shown
        )
    if port is not None or ":" in parts.netloc:
        raise InvalidError(
            "s3 URLs name a bucket, not a host; give the server with endpoint= or AWS_ENDPOINT",
            url=shown,
        )
    if parts.query or parts.fragment:
        raise InvalidError("s3 URLs take no query or fragment", url=shown)
    bucket = parts.netloc
    if not bucket:
        raise InvalidError("s3 URL has no bucket: s3://bucket/optional/prefix", url=shown)
    return bucket, _normalize_prefix(unquote(parts.path), where="url")


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidError(f"{name} must be true or false", value=raw)


def _split_endpoint(endpoint: str) -> tuple[str | None, str]:
    """``(scheme or None, host[:port])`` of an endpoint; rejects paths and credentials."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise InvalidError("s3 endpoint must be a non-empty str")
    text = endpoint.strip()
    scheme: str | None = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidError("s3 endpoint scheme must be http or https", scheme=scheme)
    host, _, path = text.partition("/")
    if path.strip("/"):
        raise InvalidError(
            "s3 endpoint must not have a path (path-style buckets are added by the store)",
            endpoint=_redact_url(endpoint),
        )
    if "@" in host:
        raise InvalidError("s3 endpoint must not contain credentials")
    if not host or any(c in host for c in "?#") or host.startswith(":"):
        raise InvalidError("s3 endpoint has no valid host", endpoint=_redact_url(endpoint))
    return scheme, host


def _bool_option(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidError(f"s3 option {name} must be a bool", value=value)


def _int_option(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidError(f"s3 option {name} must be an int >= {minimum}", value=value)
    return value


def _float_option(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidError(f"s3 option {name} must be a number of seconds", value=value)
    if value < 0 or (positive and value == 0) or value != value:
        raise InvalidError(f"s3 option {name} is out of range", value=value)
    return float(value)


def _opt_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        # never echo the value: it may be a secret
        raise InvalidError(f"s3 option {name} must be a str", type=type(value).__name__)
    return value


def resolve_config(
    bucket: str,
    prefix: str = "",
    *,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> S3Config:
    """Combine keyword options, the environment and defaults into an :class:`S3Config`.

    :param bucket: the bucket name (checked against S3's naming rules).
    :param prefix: the key prefix; leading and trailing slashes are normalized.
    :param env: the environment to read (default :data:`os.environ`).
    :param options: any of :data:`OPTIONS`; ``None`` means "not given".
    :raises InvalidError: an unknown option, an option of the wrong type or range, a bad bucket
        name, endpoint or prefix, or a ``secure`` flag contradicting the endpoint's scheme.
    """
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise InvalidError(
            "unknown option for the s3 store", options=unknown, accepted=sorted(OPTIONS)
        )
    env = os.environ if env is None else env
    if not isinstance(bucket, str) or not bucket:
        raise InvalidError("s3 bucket must be a non-empty str", bucket=bucket)
    from shale_minio._sdk import check_bucket_name

    try:
        check_bucket_name(bucket)
    except ValueError as exc:
        raise InvalidError("invalid s3 bucket name", bucket=bucket, reason=str(exc)) from None
    norm_prefix = _normalize_prefix(prefix, where="prefix")

    def pick(name: str, *env_names: str) -> str | None:
        value = _opt_str(name, options.get(name))
        if value is not None:
            return value
        for env_name in env_names:
            found = env.get(env_name)
            if found:
                return found
        return None

    endpoint = pick("endpoint", ENV_ENDPOINT_URL, ENV_ENDPOINT)
    secure_opt = options.get("secure")
    secure: bool | None = None if secure_opt is None else _bool_option("secure", secure_opt)
    scheme: str | None
    if endpoint is None:
        scheme, host = "https", _AWS_HOST
    else:
        scheme, host = _split_endpoint(endpoint)
    if scheme is None:
        scheme = "http" if _env_flag(env, ENV_ALLOW_HTTP) else "https"
        if secure is not None:
            scheme = "https" if secure else "http"
    elif secure is not None and secure != (scheme == "https"):
        raise InvalidError(
            "s3 option secure contradicts the endpoint's scheme", secure=secure, scheme=scheme
        )

    access_key = pick("access_key", ENV_ACCESS_KEY_ID)
    secret_key = pick("secret_key", ENV_SECRET_ACCESS_KEY)
    session_token = pick("session_token", ENV_SESSION_TOKEN)
    if access_key and not secret_key:
        raise InvalidError("s3 access key given without a secret key")
    if secret_key and not access_key:
        raise InvalidError("s3 secret key given without an access key")
    region = pick("region", ENV_REGION, ENV_DEFAULT_REGION) or DEFAULT_REGION
    ca_bundle = pick("ca_bundle", ENV_CA_BUNDLE)

    def num(name: str, default: Any, check: Any) -> Any:
        value = options.get(name)
        return default if value is None else check(name, value)

    def seconds(name: str, value: Any) -> float:
        return _float_option(name, value, positive=False)

    def min_part(name: str, value: Any) -> int:
        return _int_option(name, value, _MIN_PART_SIZE)

    def page(name: str, value: Any) -> int:
        size = _int_option(name, value, 1)
        if size > 1000:
            raise InvalidError(f"s3 option {name} must be at most 1000", value=size)
        return size

    retry_base = num("retry_base_delay", DEFAULT_RETRY_BASE_DELAY, seconds)
    retry_max = num("retry_max_delay", max(DEFAULT_RETRY_MAX_DELAY, retry_base), seconds)
    return S3Config(
        bucket=bucket,
        prefix=norm_prefix,
        host=host,
        secure=scheme == "https",
        region=region,
        access_key=access_key or None,
        secret_key=secret_key or None,
        session_token=session_token or None,
        ca_bundle=ca_bundle,
        timeout=num("timeout", DEFAULT_TIMEOUT, lambda n, v: _float_option(n, v, positive=True)),
        max_retries=num("max_retries", DEFAULT_MAX_RETRIES, lambda n, v: _int_option(n, v, 0)),
        pool_size=num("pool_size", DEFAULT_POOL_SIZE, lambda n, v: _int_option(n, v, 1)),
        create_bucket=num("create_bucket", False, _bool_option),
        multipart_threshold=num("multipart_threshold", DEFAULT_MULTIPART_THRESHOLD, min_part),
        part_size=num("part_size", DEFAULT_PART_SIZE, min_part),
        retry_base_delay=retry_base,
        retry_max_delay=retry_max,
        list_page_size=num("list_page_size", DEFAULT_LIST_PAGE_SIZE, page),
    )
