"""Which URLs the obstore backend owns, and how its keyword options are checked.

Schemes (``bucket`` is a bucket or an Azure container; the path is the store's key prefix):

====================================================  ======================================
URL                                                   store
====================================================  ======================================
``gs://bucket/prefix``                                Google Cloud Storage (``GCSStore``)
``az://container/prefix``, ``azure://container/...``  Azure Blob Storage (``AzureStore``)
``abfs://container/...``, ``abfss://container/...``
``abfs[s]://container@account.dfs.core.windows.net/`` (the account named in the URL)
``s3+obstore://bucket/prefix``                        S3 through obstore (``S3Store``)
====================================================  ======================================

Plain ``s3://`` stays shale-minio's: the obstore S3 client is chosen only by naming it in the
scheme, so one URL never means two different clients depending on which plugins are installed.

Options are of three kinds (anything else is passed to obstore, which rejects keys it does not
know for that store: an :class:`~shale.errors.InvalidError` before any request is made):

- shale's: ``max_retries``, ``retry_base_delay``, ``retry_max_delay``, ``retry_timeout``
  (seconds), ``client_options`` (obstore's ``ClientConfig`` dict: timeouts, proxies, TLS),
  ``credential_provider`` (an obstore credential provider, e.g.
  ``obstore.auth.boto3.Boto3CredentialProvider``);
- aliases shared with shale-minio for S3: ``access_key`` (``access_key_id``), ``secret_key``
  (``secret_access_key``); an ``endpoint`` starting with ``http://`` turns on
  ``client_options["allow_http"]``;
- obstore's own configuration keys for the store (``S3Config``, ``GCSConfig``,
  ``AzureConfig``: ``endpoint``, ``region``, ``role_arn``, ``web_identity_token_file``,
  ``service_account``, ``account_name``, ``use_emulator``, ...). Keys not given are read
  by obstore from the environment (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``).

Invariant: secrets never appear in ``repr`` or error messages (:class:`ObstoreConfig` keeps the
obstore configuration out of its ``repr``, and errors name option keys, never values).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from shale.spi import InvalidError, validate_key

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RETRY_BASE_DELAY",
    "DEFAULT_RETRY_MAX_DELAY",
    "DEFAULT_RETRY_TIMEOUT",
    "SCHEMES",
    "SHALE_OPTIONS",
    "ObstoreConfig",
    "ParsedUrl",
    "parse_url",
    "resolve_config",
]

#: URL scheme -> obstore provider.
SCHEMES: Mapping[str, str] = {
    "s3+obstore": "s3",
    "gs": "gcs",
    "az": "azure",
    "azure": "azure",
    "abfs": "azure",
    "abfss": "azure",
}
#: Options shale itself interprets (every other option goes to obstore).
SHALE_OPTIONS = frozenset(
    {
        "max_retries",
        "retry_base_delay",
        "retry_max_delay",
        "retry_timeout",
        "client_options",
        "credential_provider",
    }
)
_S3_ALIASES = {"access_key": "access_key_id", "secret_key": "secret_access_key"}
_AZURE_HOST_SUFFIXES = (".dfs.core.windows.net", ".blob.core.windows.net")

DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_BASE_DELAY = 0.1
DEFAULT_RETRY_MAX_DELAY = 2.0
#: Seconds after the first attempt when obstore stops retrying a request (its default is 180).
DEFAULT_RETRY_TIMEOUT = 180.0


@dataclass(frozen=True)
class ParsedUrl:
    """What a URL names.

    :ivar provider: ``"s3"``, ``"gcs"`` or ``"azure"``.
    :ivar root_url: the URL of the bucket (container) root, as obstore's ``from_url`` takes it.
    :ivar bucket: the bucket or container name.
    :ivar prefix: the key prefix, ``""`` or ending with ``/``.
    """

    scheme: str
    provider: str
    root_url: str
    bucket: str
    prefix: str


@dataclass(frozen=True)
class ObstoreConfig:
    """Every setting of one store, checked. The obstore configuration stays out of ``repr``."""

    url: ParsedUrl
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    client_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    credential_provider: Any = field(default=None, repr=False)
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_base_delay: float = DEFAULT_RETRY_BASE_DELAY
    retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT

    def with_prefix(self, prefix: str) -> ObstoreConfig:
        """The same settings for another prefix in the same bucket."""
        from dataclasses import replace

        return replace(self, url=replace(self.url, prefix=prefix))


def _normalize_prefix(path: str, shown: str) -> str:
    stripped = path.strip("/")
    if not stripped:
        return ""
    try:
        validate_key(stripped)
    except InvalidError:
        raise InvalidError(
            "store URL prefix must be a relative /-separated path", url=shown
        ) from None
    return stripped + "/"


def parse_url(url: object) -> ParsedUrl | None:
    """The bucket and prefix of a URL of a scheme in :data:`SCHEMES`; ``None`` for others.

    :raises InvalidError: one of these schemes with no bucket, credentials, a port, a query, a
        fragment, or a prefix with ``..``/``.``/empty segments.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str):
        return None
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        return None
    provider = SCHEMES[scheme]
    netloc = rest.partition("/")[0]
    shown = f"{scheme}://***@{netloc.rpartition('@')[2]}" if "@" in netloc else url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidError("malformed store URL", url=shown) from None
    if parts.query or parts.fragment:
        raise InvalidError("store URLs take no query or fragment", url=shown)
    bucket = parts.netloc
    if "@" in bucket:
        container, _, host = bucket.partition("@")
        azure_host = provider == "azure" and scheme.startswith("abfs")
        if not azure_host or not host.lower().endswith(_AZURE_HOST_SUFFIXES) or ":" in container:
            raise InvalidError(
                "store URLs take no credentials; use options or environment variables", url=shown
            )
        bucket = container
    elif port is not None or ":" in bucket:
        raise InvalidError("store URLs name a bucket, not a host; give endpoint=", url=shown)
    if not bucket:
        raise InvalidError(f"store URL has no bucket: {scheme}://bucket/optional/prefix", url=url)
    root_scheme = "s3" if provider == "s3" else scheme
    return ParsedUrl(
        scheme=scheme,
        provider=provider,
        root_url=f"{root_scheme}://{parts.netloc}",
        bucket=bucket,
        prefix=_normalize_prefix(unquote(parts.path), shown),
    )


def _int_option(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidError(f"obstore option {name} must be an int >= {minimum}", value=value)
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidError(f"obstore option {name} must be a number of seconds", value=value)
    if not math.isfinite(value) or value <= 0:
        raise InvalidError(f"obstore option {name} must be > 0 and finite", value=value)
    return float(value)


def resolve_config(url: str, **options: Any) -> ObstoreConfig:
    """Check ``url`` and ``options`` (see the module docstring).

    :raises InvalidError: a URL of another scheme or a malformed one, or a shale option of the
        wrong type or range. Unknown obstore keys are rejected when the store is built.
    """
    parsed = parse_url(url)
    if parsed is None:
        scheme = str(url).partition("://")[0] if "://" in str(url) else "file"
        raise InvalidError(
            "not a URL of the obstore backend", scheme=scheme, accepted=sorted(SCHEMES)
        )
    config: dict[str, Any] = {}
    for name, value in options.items():
        if name in SHALE_OPTIONS or value is None:
            continue
        if not isinstance(name, str) or not name:
            raise InvalidError("obstore option names must be non-empty str")
        key = _S3_ALIASES.get(name, name) if parsed.provider == "s3" else name
        if key in config:
            raise InvalidError("obstore option given twice (under an alias)", option=key)
        config[key] = value
    client = options.get("client_options")
    if client is None:
        client = {}
    if not isinstance(client, Mapping):
        raise InvalidError("obstore option client_options must be a dict")
    client = dict(client)
    endpoint = config.get("endpoint")
    if isinstance(endpoint, str) and endpoint.lower().startswith("http://"):
        client.setdefault("allow_http", True)
    provider = options.get("credential_provider")
    if provider is not None and not callable(provider):
        raise InvalidError("obstore option credential_provider must be callable")

    def pick(name: str, default: Any, check: Any) -> Any:
        value = options.get(name)
        return default if value is None else check(name, value)

    base = pick("retry_base_delay", DEFAULT_RETRY_BASE_DELAY, _seconds)
    return ObstoreConfig(
        url=parsed,
        config=config,
        client_options=client,
        credential_provider=provider,
        max_retries=pick("max_retries", DEFAULT_MAX_RETRIES, lambda n, v: _int_option(n, v, 0)),
        retry_base_delay=base,
        retry_max_delay=pick("retry_max_delay", max(DEFAULT_RETRY_MAX_DELAY, base), _seconds),
        retry_timeout=pick("retry_timeout", DEFAULT_RETRY_TIMEOUT, _seconds),
    )
