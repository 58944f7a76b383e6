"""``shale.store_from_env`` (SlateDB's ``ObjectStore.from_env``): ``CLOUD_PROVIDER`` and the
provider's variables choose the store; an env file fills what the environment leaves unset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import shale
from shale import Db, InvalidError
from shale.objstore.local import LocalStore
from shale.objstore.memory import MemoryStore
from shale.store_env import load_env_file, store_from_env, store_url_from_env


def test_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CLOUD_PROVIDER": "Local", "LOCAL_PATH": str(tmp_path / "a dir")}
    assert store_url_from_env(environ=env) == (tmp_path / "a dir").as_uri()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    store = shale.store_from_env()
    try:
        assert isinstance(store, LocalStore)
        with Db.open("db", object_store=store) as db:
            db.put(b"k", b"v")
    finally:
        store.close()
    with Db.open(tmp_path / "a dir" / "db") as db:
        assert db.get(b"k") == b"v"


def test_local_relative_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env = {"CLOUD_PROVIDER": "local", "LOCAL_PATH": "data"}
    assert store_url_from_env(environ=env) == (tmp_path / "data").as_uri()
    env["LOCAL_PATH"] = "~/x"
    assert store_url_from_env(environ=env) == (tmp_path / "home" / "x").as_uri()


def test_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUD_PROVIDER", "memory")
    store = store_from_env()
    assert isinstance(store, MemoryStore)


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"CLOUD_PROVIDER": "aws", "AWS_BUCKET": "b1"}, "s3://b1"),
        ({"CLOUD_PROVIDER": "AWS", "AWS_BUCKET_NAME": "b2"}, "s3://b2"),
        ({"CLOUD_PROVIDER": "gcp", "GOOGLE_BUCKET": "g"}, "gs://g"),
        ({"CLOUD_PROVIDER": "gcp", "GOOGLE_BUCKET_NAME": "g2"}, "gs://g2"),
        ({"CLOUD_PROVIDER": "azure", "AZURE_CONTAINER_NAME": "c"}, "az://c"),
    ],
)
def test_cloud_urls(env: dict[str, str], url: str) -> None:
    assert store_url_from_env(environ=env) == url


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, "CLOUD_PROVIDER"),
        ({"CLOUD_PROVIDER": "ftp"}, "CLOUD_PROVIDER: expected one of local, memory, aws"),
        ({"CLOUD_PROVIDER": "local"}, "needs the environment variable LOCAL_PATH"),
        ({"CLOUD_PROVIDER": "local", "LOCAL_PATH": ""}, "LOCAL_PATH"),
        ({"CLOUD_PROVIDER": "aws"}, "AWS_BUCKET or AWS_BUCKET_NAME"),
        ({"CLOUD_PROVIDER": "aws", "AWS_BUCKET": "b/sub"}, "must name a bucket"),
        ({"CLOUD_PROVIDER": "azure"}, "AZURE_CONTAINER_NAME"),
    ],
)
def test_bad_environments(env: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidError, match=match):
        store_url_from_env(environ=env)


def test_env_file_fills_only_what_is_unset(tmp_path: Path) -> None:
    f = tmp_path / "slatedb.env"
    f.write_text(
        "# where the data lives\n"
        "\n"
        "export CLOUD_PROVIDER=local\n"
        f"LOCAL_PATH = '{tmp_path / 'from-file'}'  # a comment\n"
        "AWS_REGION=eu-west-1\n"
    )
    env = {"AWS_REGION": "us-east-2"}  # set: the file must not override it
    url = store_url_from_env(f, environ=env)
    assert url == (tmp_path / "from-file").as_uri()
    assert env["AWS_REGION"] == "us-east-2" and env["CLOUD_PROVIDER"] == "local"


def test_default_env_file_is_dot_env_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env: dict[str, str] = {}
    with pytest.raises(InvalidError, match="CLOUD_PROVIDER"):  # no .env: nothing loaded
        store_url_from_env(environ=env)
    (tmp_path / ".env").write_text("CLOUD_PROVIDER=memory\n")
    assert store_url_from_env(environ=env) == "memory://"


def test_env_file_goes_to_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As SlateDB's dotenvy: the store plugins read their variables from the environment."""
    monkeypatch.delenv("CLOUD_PROVIDER", raising=False)
    monkeypatch.delenv("SHALE_TEST_FROM_FILE", raising=False)
    f = tmp_path / "e.env"
    f.write_text("CLOUD_PROVIDER=memory\nSHALE_TEST_FROM_FILE=1\n")
    try:
        assert isinstance(store_from_env(f), MemoryStore)
        assert os.environ["SHALE_TEST_FROM_FILE"] == "1"
    finally:
        os.environ.pop("CLOUD_PROVIDER", None)
        os.environ.pop("SHALE_TEST_FROM_FILE", None)


def test_env_file_syntax(tmp_path: Path) -> None:
    f = tmp_path / "x.env"
    f.write_text(
        "A=plain value\n"
        "B='single # not a comment'\n"
        'C="line\\nbreak \\"quoted\\""\n'
        "D=\n"
        "E=value # comment\n"
        "export F=exported\n"
        "  G  =  spaced  \n"
    )
    assert load_env_file(f) == {
        "A": "plain value",
        "B": "single # not a comment",
        "C": 'line\nbreak "quoted"',
        "D": "",
        "E": "value",
        "F": "exported",
        "G": "spaced",
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [("A=1\nnot a pair\n", 2), ("A='open\n", 1), ('A="x" y\n', 1), ("1A=x\n", 1)],
)
def test_malformed_env_files(tmp_path: Path, text: str, line: int) -> None:
    f = tmp_path / "bad.env"
    f.write_text(text)
    with pytest.raises(InvalidError) as exc:
        store_url_from_env(f, environ={})
    assert exc.value.detail["line"] == line


def test_a_named_env_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidError, match="cannot read the env file"):
        store_url_from_env(tmp_path / "missing.env", environ={"CLOUD_PROVIDER": "memory"})
    with pytest.raises(InvalidError, match="env_file must be a path"):
        store_url_from_env(3, environ={})  # type: ignore[arg-type]
