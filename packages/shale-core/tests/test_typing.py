"""A user's type checker sees shale's real types (issue 10 item 7).

``shale/__init__.py`` imports its public classes lazily (``import shale`` stays light); the
``if TYPE_CHECKING:`` imports beside the lazy ``__getattr__`` must make ``shale.Db`` & co. real
types to mypy, and string options must be ``Literal`` types, so a typo is a type error. The test
runs mypy in a subprocess on user-style code written to a temporary directory.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import shale

pytest.importorskip("mypy")  # a development tool: not in the tox `core` environment


def _mypy(tmp_path: pathlib.Path, code: str) -> tuple[int, str]:
    path = tmp_path / "user_code.py"
    path.write_text(textwrap.dedent(code))
    environ = dict(os.environ)
    src = pathlib.Path(shale.__file__).resolve().parent.parent
    if src.name not in ("site-packages", "dist-packages"):  # a checkout: tell mypy where
        environ["MYPYPATH"] = str(src)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environ,
        timeout=600,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_public_names_are_real_types_and_string_options_are_literals(
    tmp_path: pathlib.Path,
) -> None:
    code, out = _mypy(
        tmp_path,
        """
        import shale

        def main() -> None:
            with shale.Db.open("/tmp/db", shale.Settings(compression_codec="zstd")) as db:
                reveal_type(shale.Db.open("/tmp/db"))
                reveal_type(db.get(b"k", durability="remote"))
                reveal_type(shale.Settings())
                reveal_type(shale.WriteBatch())
                reveal_type(shale.aio.AsyncDb)
                db.get(b"k", durability="disk")
                shale.Settings(compression_codec="gzip", manifest_format_version=3)
        """,
    )
    lines = out.splitlines()
    revealed = [
        line.split("Revealed type is ", 1)[1].replace("builtins.", "")
        for line in lines
        if "Revealed type is " in line
    ]
    assert revealed[:4] == [
        '"shale.db.Db"',
        '"bytes | None"',
        '"shale.settings.Settings"',
        '"shale.batch.WriteBatch"',
    ], out
    assert len(revealed) == 5 and revealed[4].endswith('-> shale.aio.AsyncDb"'), out
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 3, out
    assert '"durability" to "get" of "Db"' in errors[0] and "'disk'" in errors[0]
    assert "compression_codec" in errors[1] and "gzip" in errors[1]
    assert "manifest_format_version" in errors[2] and "Literal[3]" in errors[2]
    assert code == 1


def test_correct_user_code_type_checks(tmp_path: pathlib.Path) -> None:
    code, out = _mypy(
        tmp_path,
        """
        import shale
        from shale.settings import CompressionCodec, Durability

        def read(db: shale.Db, key: bytes, durability: Durability) -> bytes | None:
            return db.get(key, durability=durability)

        def settings(codec: CompressionCodec | None) -> shale.Settings:
            return shale.Settings(compression_codec=codec, manifest_format_version=1)

        @shale.hookimpl
        def shale_db_opened(db: shale.Db) -> None:
            batch = shale.WriteBatch()
            batch.put(b"k", b"v")
            db.write(batch)
        """,
    )
    assert code == 0, out
