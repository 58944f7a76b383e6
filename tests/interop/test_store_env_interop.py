"""One env file configures both engines' object store: the official ``ObjectStore.from_env``
and ``shale.store_from_env`` open the same directory from the same ``.env`` file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shale import Db, Settings, store_from_env

OFFICIAL = textwrap.dedent(
    """
    import asyncio, sys
    import slatedb.uniffi as s

    async def main(env_file, mode):
        store = s.ObjectStore.from_env(env_file)
        settings = s.Settings.default()
        settings.set("compactor_options", "null")
        settings.set("garbage_collector_options", "null")
        builder = s.DbBuilder("db", store)
        builder.with_settings(settings)
        db = await builder.build()
        try:
            if mode == "write":
                await db.put(b"official", b"1")
            else:
                print((await db.get(b"shale")).decode())
        finally:
            await db.shutdown()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _official(env_file: Path, mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUD_PROVIDER", "LOCAL_PATH")}
    proc = subprocess.run(
        [sys.executable, "-c", OFFICIAL, str(env_file), mode],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_one_env_file_for_both(
    tmp_path: Path, official_reader: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()  # the official local store wants the directory to exist
    env_file = tmp_path / "slatedb.env"
    env_file.write_text(f"CLOUD_PROVIDER=local\nLOCAL_PATH={data}\n")
    _official(env_file, "write")
    monkeypatch.delenv("CLOUD_PROVIDER", raising=False)
    monkeypatch.delenv("LOCAL_PATH", raising=False)
    store = store_from_env(env_file)  # sets the two variables, as the official does
    try:
        settings = Settings(compactor_options=None, garbage_collector_options=None)
        with Db.open("db", settings, object_store=store) as db:
            assert db.get(b"official") == b"1"
            db.put(b"shale", b"2")
    finally:
        store.close()
        for name in ("CLOUD_PROVIDER", "LOCAL_PATH"):  # set by the env file
            os.environ.pop(name, None)
    assert _official(env_file, "read") == "2"
