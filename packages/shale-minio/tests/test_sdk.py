"""The minio SDK's private API shale-minio relies on (``shale_minio._sdk``) is still there,
with the parameters it is called with. This fails loudly on an SDK upgrade that changes it:
review ``_sdk.py`` against the new SDK before widening the ``minio>=7.2,<7.3`` pin."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import minio
from minio import Minio

import shale_minio
from shale_minio import _sdk


def test_every_private_sdk_method_exists_with_the_expected_signature() -> None:
    problems = _sdk.check_sdk()
    assert not problems, (
        f"the minio SDK {minio.__version__} changed its private API that shale_minio._sdk "
        f"uses: {problems}"
    )
    for name, params in _sdk.PRIVATE_API.items():
        method = getattr(Minio, name)
        names = [p for p in inspect.signature(method).parameters if p != "self"]
        assert tuple(names[: len(params)]) == params, name


def test_check_sdk_reports_a_missing_or_reshaped_method() -> None:
    class Changed(Minio):
        _put_object = None  # type: ignore[assignment]

        def _upload_part(self, bucket_name: str, object_name: str) -> str:  # type: ignore[override]
            return ""

    problems = _sdk.check_sdk(Changed)
    assert any("_put_object is gone" in p for p in problems)
    assert any("_upload_part" in p for p in problems)


def test_the_sdk_version_is_within_the_pin() -> None:
    major, minor = (int(x) for x in minio.__version__.split(".")[:2])
    assert (major, minor) == (7, 2), minio.__version__


def test_no_private_sdk_call_outside_the_sdk_module() -> None:
    """Only ``_sdk.py`` touches ``client._...`` or imports private SDK helpers."""
    src = Path(shale_minio.__file__).parent
    for path in src.glob("*.py"):
        if path.name == "_sdk.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                base = node.value
                if isinstance(base, ast.Attribute) and base.attr == "_client":
                    raise AssertionError(f"{path.name}:{node.lineno}: private SDK call")
            if isinstance(node, ast.ImportFrom) and node.module in ("minio.helpers", "minio.xml"):
                raise AssertionError(f"{path.name}:{node.lineno}: private SDK import")
