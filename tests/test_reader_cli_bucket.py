"""``shale get`` and ``shale scan`` against a live writer in another process change nothing.

The writer is :mod:`tests.test_readonly_processes`'s (durable puts in a loop, L0 flushes, no
compactor or GC, so it only ever *adds* objects). Before and after the read-only commands the
test hashes every object in the bucket: every object that existed before is byte-identical
after, every new object is one the writer writes (WAL, L0 SST, manifest), no manifest carries a
checkpoint (the commands read in ``follow_latest`` mode), and the writer keeps writing and closes
cleanly (it was never fenced).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readonly_processes import _Writer


def _bucket(root: Path) -> dict[str, str]:
    """The bucket's objects and their hashes: the local store's staging files (``.tmp-*``,
    renamed into place or removed by a running writer) are not objects."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name.startswith(".tmp-") or not p.is_file():
            continue
        try:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        except FileNotFoundError:  # a staging file renamed between the listing and the read
            continue
    return out


def test_cli_reads_leave_the_bucket_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shale import DbReader, cli

    db_dir = tmp_path / "db"
    writer = _Writer(db_dir)
    try:
        seen = writer.wait_acked(100)
        before = _bucket(db_dir)
        for round_ in range(4):
            seen = writer.wait_acked(seen + 20)
            assert cli.main(["get", str(db_dir), f"a-{seen - 1:07d}"]) == 0
            args = ["scan", str(db_dir), "--keys-only", "--prefix", "a-"]
            if round_ % 2:
                args.append("--reverse")
            assert cli.main(args) == 0
        proc = subprocess.run(
            [sys.executable, "-m", "shale", "scan", str(db_dir), "--keys-only"],
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len(proc.stdout.split()) >= seen
        after = _bucket(db_dir)
        changed = [k for k, h in before.items() if after.get(k) != h]
        assert changed == []  # nothing rewritten, nothing deleted
        added = set(after) - set(before)
        assert added and all(k.split("/")[0] in ("wal", "compacted", "manifest") for k in added)
        writer.wait_acked(seen + 50)  # still writing: not fenced
    finally:
        closed = writer.stop()
    assert closed["close_reason"] == "clean", (closed, writer.stderr[-3000:])
    capsys.readouterr()
    from shale.meta.manifest_store import ManifestStore
    from shale.objstore.local import LocalStore

    store = LocalStore(str(db_dir))
    try:
        ms = ManifestStore(store, "")
        ids = ms.list_ids()
        assert len(ids) > 2 and all(ms.read(i).checkpoints == [] for i in ids)
    finally:
        store.close()
    with DbReader.open(str(db_dir), mode="follow_latest") as r:
        assert r.get(b"a-0000000") is not None
