"""The object-store disk cache across processes.

* A database is written here; then two cold processes (this file run as a script, mode
  ``read``) read all of it -- a full scan and point gets -- through a disk cache in the same
  folder, with no block cache. The first fills the cache; the second must serve at least 90 %
  of its SST reads from disk, counted both by the cache and by a counting wrapper around the
  real local store (the requests that actually reached the store).
* A process that keeps writing cache files (mode ``churn``: evict and re-read every SST) is
  SIGKILLed; afterwards every cache file either fails its checks (and would be deleted and
  refetched) or holds exactly the object's bytes, and a reader through the cache reads every
  row correctly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

N = 20000
LINE_TIMEOUT_S = 60.0


def _cache_settings(cache: str) -> dict[str, Any]:
    return {
        "compactor_options": None,
        "garbage_collector_options": None,
        "block_cache_bytes": 0,  # every block read goes to the (cached) store
        "object_store_cache_options": {
            "root_folder": cache,
            "part_size_bytes": "16KiB",
            "scan_interval": None,
        },
    }


def _emit(obj: dict[str, Any]) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


class _Counting:
    """The real local store, with the SST reads that reach it counted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.sst_gets = 0
        self._lock = threading.Lock()

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if "/compacted/" in key:
            with self._lock:
                self.sst_gets += 1
        return self._inner.get_range(key, start, end)  # type: ignore[no-any-return]

    def get(self, key: str) -> bytes:
        if "/compacted/" in key:
            with self._lock:
                self.sst_gets += 1
        return self._inner.get(key)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _read_main(root: str, cache: str) -> None:
    from shale import DbReader, Settings
    from shale.objstore.local import LocalStore

    counting = _Counting(LocalStore(root, fsync=False))
    settings = Settings.from_dict(_cache_settings(cache))
    with DbReader.open("db", settings=settings, object_store=counting) as reader:
        rows = sum(1 for _ in reader.scan())
        rng = random.Random(5)
        found = sum(reader.get(b"k%06d" % rng.randrange(N)) is not None for _ in range(300))
        rows += sum(1 for _ in reader.scan(reverse=True))
        m = reader.metrics()
    _emit(
        {
            "rows": rows,
            "found": found,
            "reads": m["disk_cache_reads"],
            "reads_local": m["disk_cache_reads_local"],
            "inner_sst_gets": counting.sst_gets,
        }
    )


def _churn_main(root: str, cache: str) -> None:
    from shale.objstore.cached import CachedObjectStore
    from shale.objstore.local import LocalStore
    from shale.settings import ObjectStoreCacheOptions

    store = CachedObjectStore(
        LocalStore(root, fsync=False),
        ObjectStoreCacheOptions(root_folder=cache, part_size_bytes=4096, scan_interval=None),
        namespace="db",
    )
    keys = [m.key for m in store.list("db/compacted/")]
    rounds = 0
    while True:
        for key in keys:
            store.evict(key)
            store.get(key)
        rounds += 1
        if rounds == 1:
            _emit({"event": "ready"})


def _write(root: Path) -> None:
    from shale import Db, Settings
    from shale.objstore.local import LocalStore

    store = LocalStore(root, fsync=False)
    settings = Settings(
        compactor_options=None,
        garbage_collector_options=None,
        l0_sst_size_bytes=1024 * 1024,
        l0_max_ssts=1000,
    )
    with Db.open("db", settings, object_store=store) as db:
        for i in range(N):
            db.put(b"k%06d" % i, b"value-%06d-" % i + b"x" * 100, durable=False)
            if i % 8000 == 7999:
                db.flush(memtable=True)
        db.flush(memtable=True)


def _run(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        timeout=120,
        check=False,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return json.loads(out.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_second_cold_process_reads_from_the_disk_cache(tmp_path: Path) -> None:
    _write(tmp_path / "store")
    cache = str(tmp_path / "cache")
    first = _run("read", str(tmp_path / "store"), cache)
    second = _run("read", str(tmp_path / "store"), cache)
    for r in (first, second):
        assert r["rows"] == 2 * N and r["found"] == 300
    assert first["inner_sst_gets"] > 0 and first["reads_local"] < first["reads"]
    assert second["reads"] >= first["reads"] * 0.9  # the same work
    assert second["reads_local"] >= 0.9 * second["reads"]
    assert second["inner_sst_gets"] <= 0.1 * second["reads"]
    assert second["inner_sst_gets"] == 0  # nothing evicted: everything was local


def test_sigkill_during_cache_writes_leaves_nothing_served_corrupt(tmp_path: Path) -> None:
    from shale import DbReader, Settings
    from shale.objstore.cached import CorruptCacheFile, read_cache_file
    from shale.objstore.local import LocalStore

    _write(tmp_path / "store")
    cache = tmp_path / "cache"
    with subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "churn",
            str(tmp_path / "store"),
            str(cache),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    ) as proc:
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline()) == {"event": "ready"}
            threading.Event().wait(0.3)  # let it get well into its next round of writes
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    store = LocalStore(tmp_path / "store", fsync=False)
    kinds: Counter[str] = Counter()
    for path in cache.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith(".tmp-"):
            kinds["temp"] += 1
            continue
        try:
            payload, _ = read_cache_file(str(path))
        except CorruptCacheFile:
            kinds["corrupt"] += 1  # would be deleted and refetched
            continue
        key = "db/compacted/" + path.parent.name
        if path.name == "head":
            assert json.loads(payload)["size"] == store.head(key).size
        else:
            part = int(path.name.rsplit("-", 1)[1])
            assert payload == store.get_range(key, part * 4096, (part + 1) * 4096), path
        kinds["verified"] += 1
    assert kinds["verified"] > 0
    settings = Settings.from_dict(
        {
            **_cache_settings(str(cache)),
            "object_store_cache_options": {
                "root_folder": str(cache),
                "part_size_bytes": 4096,
                "scan_interval": None,
            },
        }
    )
    with DbReader.open("db", settings=settings, object_store=store) as reader:
        rows = list(reader.scan())
        assert [k for k, _ in rows] == [b"k%06d" % i for i in range(N)]
        assert all(v == b"value-%06d-" % i + b"x" * 100 for i, (_, v) in enumerate(rows))
        assert reader.metrics()["disk_cache_reads_local"] > 0


if __name__ == "__main__":
    mode, root, folder = sys.argv[1:4]
    if mode == "read":
        _read_main(root, folder)
    else:
        _churn_main(root, folder)
