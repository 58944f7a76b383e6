"""The SeaweedFS fixture itself: binary lookup, CI behaviour, loopback-only listeners, failures."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from shale_minio import testing
from shale_minio.testing import SeaweedServer, WeedNotFound


def test_missing_binary_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(testing.WEED_ENV, "/nonexistent/weed")
    monkeypatch.delenv(testing.CI_ENV, raising=False)
    with pytest.raises(WeedNotFound):
        testing.find_weed()
    with pytest.raises(pytest.skip.Exception, match="not an executable"):
        testing.require_weed()


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(testing.WEED_ENV, "/nonexistent/weed")
    monkeypatch.setenv(testing.CI_ENV, "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI"):
        testing.require_weed()


def test_finds_the_wheel_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(testing.WEED_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # still found beside this interpreter
    assert os.path.basename(testing.find_weed()) == "weed"


def test_dying_server_fails_fast_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fatal: scripted failure'\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="scripted failure") as info:
        with testing.start_seaweed(str(fake)):
            pass  # pragma: no cover
    assert "exited with code 3" in str(info.value)
    assert time.monotonic() - start < 5


def _listening_addresses(pid: int) -> set[str]:
    """Local ``ip:port`` of every TCP socket ``pid`` listens on (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # LISTEN
                    host, port = local.split(":")
                    found.add(f"{host}:{int(port, 16)}")
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_server_listens_on_loopback_only(s3_server: SeaweedServer) -> None:
    addresses = _listening_addresses(s3_server.process.pid)
    assert addresses, "found no listening sockets"
    assert {a.split(":")[0] for a in addresses} == {"0100007F"}  # 127.0.0.1, nothing else
    s3_port = int(s3_server.endpoint.rsplit(":", 1)[1])
    assert f"0100007F:{s3_port}" in addresses
    args = s3_server.process.args
    assert "-master.telemetry=false" in args and "-ip.bind=127.0.0.1" in args


def test_server_env_and_secret(s3_server: SeaweedServer) -> None:
    env = s3_server.env()
    assert env["AWS_ENDPOINT"] == s3_server.endpoint
    assert env["AWS_ALLOW_HTTP"] == "true"
    assert s3_server.secret_key not in repr(s3_server)
    bucket = s3_server.make_bucket()
    with s3_server.store(bucket, "p") as store:
        store.put("x", b"1")
        assert [m.key for m in store.list()] == ["x"]


def test_weed_variable_is_in_the_plugin_namespace() -> None:
    from shale import Settings

    assert testing.WEED_ENV == "SHALE_PLUGIN_MINIO_WEED"
    assert Settings.from_env(environ={testing.WEED_ENV: "/usr/bin/weed"}) == Settings()
