"""Tests of opening stores by URL: shale.plugins.open_store and the built-in store hooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shale.errors import InvalidError
from shale.objstore import ObjectStore
from shale.objstore.local import LocalStore
from shale.objstore.local import shale_open_object_store as open_local
from shale.objstore.memory import MemoryStore, forget_named
from shale.plugins import open_store, reset_host


@pytest.fixture(autouse=True)
def _fresh_host() -> Iterator[None]:
    reset_host()
    yield
    reset_host()
    forget_named()


def test_plain_path_opens_local_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "db"))
    assert isinstance(store, LocalStore)
    assert isinstance(store, ObjectStore)
    assert store.root == str(tmp_path / "db")
    assert not (tmp_path / "db").exists(), "opening creates no directory"
    store.put("k", b"v")
    assert (tmp_path / "db").is_dir(), "the first write creates the root"
    store.put("k", b"v")
    assert (tmp_path / "db" / "k").read_bytes() == b"v"


def test_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("rel/db")
    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / "rel" / "db")


def test_path_like_opens_local_store(tmp_path: Path) -> None:
    store = open_local(tmp_path / "p", {})  # type: ignore[arg-type]
    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / "p")


@pytest.mark.parametrize("form", ["file://{p}", "file://localhost{p}", "FILE://{p}"])
def test_file_url_opens_local_store(tmp_path: Path, form: str) -> None:
    store = open_store(form.format(p=tmp_path / "db"))
    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / "db")


def test_file_url_is_percent_decoded(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/with%20space")
    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / "with space")


@pytest.mark.parametrize(
    "url",
    ["file://relative/path", "file://otherhost/abs", "file://", "file:///x?q=1", "file:///x#f", ""],
)
def test_bad_file_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidError):
        open_store(url)


def test_local_fsync_option(tmp_path: Path) -> None:
    store = open_store(str(tmp_path), fsync=False)
    assert isinstance(store, LocalStore) and store.fsync is False
    store = open_store(str(tmp_path))
    assert isinstance(store, LocalStore) and store.fsync is True
    with pytest.raises(InvalidError, match="fsync"):
        open_store(str(tmp_path), fsync="no")


def test_unknown_local_option_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidError, match="bogus"):
        open_store(str(tmp_path), bogus=1)


def test_memory_urls() -> None:
    a = open_store("memory://")
    b = open_store("memory://")
    assert isinstance(a, MemoryStore) and isinstance(b, MemoryStore)
    assert a is not b
    shared = open_store("memory://db1")
    shared.put("k", b"v")
    again = open_store("memory://db1")
    assert again is shared
    assert again.get("k") == b"v"
    assert open_store("memory://db2") is not shared


def test_memory_rejects_options() -> None:
    with pytest.raises(InvalidError):
        open_store("memory://", fsync=True)


def test_local_hook_ignores_other_schemes() -> None:
    for url in ("memory://", "s3://bucket/prefix", "gs://b", "az://c", 42):
        assert open_local(url, {}) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["nosuchscheme://x/y", "ftp://host/p"])
def test_unknown_scheme_is_invalid_and_names_it(url: str) -> None:
    with pytest.raises(InvalidError) as info:
        open_store(url)
    scheme = url.split("://")[0]
    assert f"scheme={scheme!r}" in str(info.value)
