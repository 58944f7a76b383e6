"""Every use of the minio SDK's private API, in one place (issue 15).

The public ``Minio.put_object`` sends ``If-None-Match`` / ``If-Match`` as ``x-amz-meta-*``
metadata, which no server evaluates, so conditional writes need the SDK's lower-level request
methods; multipart uploads with a condition on the Complete, and listings with a page size,
need them too. They are internal to the SDK, so:

- the dependency is pinned to ``minio>=7.2,<7.3`` (``pyproject.toml``);
- :data:`PRIVATE_API` names each private method with the parameters this module passes, and
  :func:`check_sdk` compares it with the installed SDK; ``tests/test_sdk.py`` fails loudly
  (naming the method and what changed) when an SDK upgrade renames, removes or reshapes one;
- the rest of the package calls only the functions below, never ``client._something``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from minio import Minio
from minio.error import S3Error
from minio.helpers import check_bucket_name as _check_bucket_name
from minio.helpers import md5sum_hash
from minio.xml import Element, SubElement, getbytes

__all__ = [
    "PRIVATE_API",
    "abort_multipart_upload",
    "check_bucket_name",
    "check_sdk",
    "complete_multipart_upload",
    "create_multipart_upload",
    "list_objects",
    "put_object",
    "upload_part",
]

#: The private ``Minio`` methods used, each with the leading parameters (after ``self``) it is
#: called with, by name and in order (keyword-only parameters the SDK may add are fine).
PRIVATE_API: dict[str, tuple[str, ...]] = {
    "_put_object": ("bucket_name", "object_name", "data", "headers"),
    "_create_multipart_upload": ("bucket_name", "object_name", "headers"),
    "_upload_part": (
        "bucket_name",
        "object_name",
        "data",
        "headers",
        "upload_id",
        "part_number",
    ),
    "_execute": ("method", "bucket_name", "object_name", "body", "headers", "query_params"),
    "_abort_multipart_upload": ("bucket_name", "object_name", "upload_id"),
    "_list_objects": ("bucket_name", "continuation_token", "delimiter", "encoding_type"),
}
#: Keyword arguments ``_list_objects`` is called with.
_LIST_KEYWORDS = ("delimiter", "encoding_type", "max_keys", "prefix")
#: Private helpers imported from SDK modules (their import above fails loudly if they go).
PRIVATE_HELPERS = (
    "minio.helpers.check_bucket_name",
    "minio.helpers.md5sum_hash",
    "minio.xml.Element/SubElement/getbytes",
)


def check_bucket_name(bucket: str) -> None:
    """The SDK's bucket-name check (not strict: the names S3-compatible servers accept).

    :raises ValueError: an invalid name.
    """
    _check_bucket_name(bucket, strict=False)


def check_sdk(client_type: type = Minio) -> list[str]:
    """What of :data:`PRIVATE_API` the installed SDK lacks or has reshaped ([] = all there)."""
    problems = []
    for name, params in PRIVATE_API.items():
        method = getattr(client_type, name, None)
        if not callable(method):
            problems.append(f"Minio.{name} is gone")
            continue
        sig = inspect.signature(method)
        names = [p for p in sig.parameters if p != "self"]
        if tuple(names[: len(params)]) != params:
            problems.append(f"Minio.{name}{sig} no longer starts with {params}")
        if name == "_list_objects":  # (called with keywords)
            missing = [k for k in _LIST_KEYWORDS if k not in sig.parameters]
            if missing:
                problems.append(f"Minio._list_objects{sig} lacks {missing}")
    helper = inspect.signature(_check_bucket_name).parameters
    if "strict" not in helper:
        problems.append("minio.helpers.check_bucket_name lost its strict parameter")
    return problems


def put_object(client: Minio, bucket: str, name: str, data: bytes, headers: Any) -> None:
    """One single-part PUT carrying ``headers`` as real HTTP headers (conditions included)."""
    client._put_object(bucket, name, data, headers=headers)


def create_multipart_upload(client: Minio, bucket: str, name: str, headers: Any) -> str:
    """Start a multipart upload; its id."""
    upload_id: str = client._create_multipart_upload(bucket, name, headers)
    return upload_id


def upload_part(
    client: Minio, bucket: str, name: str, data: bytes, upload_id: str, number: int
) -> str:
    """Upload part ``number``; its etag."""
    etag: str = client._upload_part(bucket, name, data, None, upload_id, number)
    return etag


def complete_multipart_upload(
    client: Minio,
    bucket: str,
    name: str,
    upload_id: str,
    parts: list[tuple[int, str]],
    condition: dict[str, str],
) -> None:
    """Complete an upload with ``condition`` headers on the request (the SDK's own complete
    cannot carry them).

    :raises S3Error: the server refused, also when it answered 200 with an ``<Error>`` body.
    """
    root = Element("CompleteMultipartUpload")
    for number, etag in parts:
        tag = SubElement(root, "Part")
        SubElement(tag, "PartNumber", str(number))
        SubElement(tag, "ETag", f'"{etag}"')
    body = getbytes(root)
    headers: dict[str, str | list[str] | tuple[str]] = {
        "Content-Type": "application/xml",
        "Content-MD5": str(md5sum_hash(body)),
        **condition,
    }
    response = client._execute(
        "POST",
        bucket,
        name,
        body=body,
        headers=headers,
        query_params={"uploadId": upload_id},
    )
    # S3 may report a failed Complete as 200 with an <Error> document.
    if b"<Error>" in response.data[:512]:
        raise S3Error.fromxml(response)


def abort_multipart_upload(client: Minio, bucket: str, name: str, upload_id: str) -> None:
    client._abort_multipart_upload(bucket, name, upload_id)


def list_objects(client: Minio, bucket: str, prefix: str, page_size: int) -> Iterator[Any]:
    """Every object under ``prefix`` (no delimiter), ``page_size`` keys a request."""
    objects: Iterator[Any] = client._list_objects(
        bucket,
        delimiter=None,
        encoding_type="url",
        max_keys=page_size,
        prefix=prefix,
    )
    return objects
