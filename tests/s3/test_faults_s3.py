"""Faults over S3: injected transient errors and lost replies (shale-faults), and a real outage
of the SeaweedFS server.

Injected faults (``FaultyStore`` wrapping the real ``S3Store``: the faults come on top of the
store's own retries, i.e. they model failures that outlast them):

* :func:`test_durable_writes_survive_faults_where_the_engine_retries` -- opened through the
  plugin route (``store_options={"faults": spec}``): transient errors on 10 % of the WAL and
  SST requests, and "succeeded but reported failure" (``after=True``) on 5 % of the WAL and
  SST puts. Four writers do durable puts and retry the ones that raise ``UnavailableError``
  (a write that raised is not acknowledged); one of them also flushes the memtable to L0
  every 10 writes.
  Every acknowledged write is readable after a reopen without faults. The manifest and the
  WAL read-back are left out of this spec (the next two tests cover them).
* :func:`test_durable_writes_survive_transient_faults_on_every_request` -- the same with
  transient errors on 10 % of *every* request.
* :func:`test_lost_wal_reply_then_failed_readback_is_not_a_fence` and
  :func:`test_failed_manifest_write_in_l0_flush_does_not_close_the_db` -- two former engine
  bugs, each reproduced deterministically by one targeted fault.

A real outage (a private server per test, never the session one; :class:`Restartable`):

* :func:`test_outage_durable_writes_fail_then_recover` -- four writers do bounded durable
  writes (``put(durable=False)`` + ``handle.wait_durable(timeout)``); the server is SIGKILLed
  mid-workload; every write during the outage raises ``UnavailableError`` within its bound;
  the server is restarted **on the same ports and data directory**; writes succeed again, the
  writes that failed during the outage become durable (they stay queued, as documented), and
  after a reopen nothing acknowledged is lost.
* :func:`test_outage_plain_durable_put_raises_instead_of_hanging` -- a plain ``put()``
  during the outage raises instead of blocking until the server is back.
* :func:`test_outage_close_returns` -- ``close()`` during the outage returns within its bound
  and raises ``UnavailableError`` saying which writes it could not flush.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shale.db import Db
from shale.errors import ClosedError, UnavailableError
from shale.settings import Settings
from shale_faults import FaultRule, FaultyStore
from shale_minio import testing as seaweed

# --------------------------------------------------------------------------------------------
# injected faults
# --------------------------------------------------------------------------------------------

WRITERS = 4
WRITES_PER_WRITER = 60
#: Attempts of one write (or one open) before the test gives up.
MAX_ATTEMPTS = 40


def _value(w: int, i: int) -> bytes:
    return b"w%d-%d-" % (w, i) + b"v" * (i % 61)


def _open_retrying(open_db: Any) -> Db:
    """Open, retrying ``UnavailableError`` (an injected fault can hit any request of open)."""
    for _ in range(MAX_ATTEMPTS):
        try:
            db: Db = open_db()
            return db
        except UnavailableError:
            continue
    raise AssertionError(f"could not open the database in {MAX_ATTEMPTS} attempts")


def _workload(db: Db, *, flush_every: int) -> tuple[dict[bytes, bytes], dict[str, int]]:
    """:data:`WRITERS` threads of durable puts, retrying ``UnavailableError``; writer 0 also
    flushes the memtable to L0 after every ``flush_every`` of its writes (retrying too).

    Returns the acknowledged writes and counters; re-raises what a thread raised (a
    ``ClosedError`` first, as that is the failure the xfail tests expect).
    """
    acked: dict[bytes, bytes] = {}
    counts = {"unavailable": 0, "flushes": 0, "flush_unavailable": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def retrying(what: str, call: Any) -> None:
        for _ in range(MAX_ATTEMPTS):
            try:
                call()
                return
            except UnavailableError:
                with lock:
                    counts[what] += 1
        raise AssertionError(f"{what}: {MAX_ATTEMPTS} attempts failed")

    def writer(w: int) -> None:
        try:
            for i in range(WRITES_PER_WRITER):
                key, value = b"w%d-%04d" % (w, i), _value(w, i)
                retrying("unavailable", lambda: db.put(key, value))  # noqa: B023
                with lock:
                    acked[key] = value
                if w == 0 and i % flush_every == flush_every - 1:
                    retrying("flush_unavailable", lambda: db.flush(memtable=True))
                    counts["flushes"] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "workload threads hang"
    for exc in sorted(errors, key=lambda e: not isinstance(e, ClosedError)):
        raise exc
    return acked, counts


def _check_acked(db: Db, acked: dict[bytes, bytes]) -> None:
    missing = {k: v for k, v in acked.items() if db.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged writes lost: {sorted(missing)[:10]}"
    scanned = dict(db.scan())
    assert all(scanned.get(k) == v for k, v in acked.items())


def test_durable_writes_survive_faults_where_the_engine_retries(s3db: Any) -> None:
    spec = {
        "seed": 6,
        "rules": [
            # the first two L0 SST puts fail for sure (lost reply, then a plain failure) ...
            {"ops": "put", "prefix": "compacted/", "after": True, "limit": 1},
            {"ops": "put", "prefix": "compacted/", "limit": 1},
            # lost replies: the put lands, the caller is told it failed
            {"ops": "put_if_absent,put", "prefix": "wal/", "probability": 0.05, "after": True},
            {"ops": "put", "prefix": "compacted/", "probability": 0.05, "after": True},
            # transient errors on 10 % of the WAL writes and listings, and of every SST request
            {"ops": "put_if_absent,put,list,head,delete", "prefix": "wal/", "probability": 0.1},
            {"ops": "*", "prefix": "compacted/", "probability": 0.1},
        ],
    }
    config = s3db.settings(l0_max_ssts=1024)
    db = s3db.track(_open_retrying(lambda: s3db.open(config, faults=spec)))
    faulty = db.store.inner  # the handle's store counts requests (docs/metrics.md) around it
    assert isinstance(faulty, FaultyStore), type(faulty)
    acked, counts = _workload(db, flush_every=10)
    assert db.close_reason is None
    n_l0 = len(db.refresh_manifest().l0)
    db.close()

    injected = faulty.counts
    assert injected["put_if_absent:transient"] > 0, injected
    assert injected["put_if_absent:transient:after"] > 0, injected
    assert injected["put:transient"] > 0 and injected["put:transient:after"] > 0, injected
    assert counts["unavailable"] > 0, counts
    assert len(acked) == WRITERS * WRITES_PER_WRITER
    assert counts["flushes"] == WRITES_PER_WRITER // 10 and n_l0 >= 3, (counts, n_l0)

    clean = s3db.open()  # no faults
    _check_acked(clean, acked)
    clean.close()


def test_durable_writes_survive_transient_faults_on_every_request(s3db: Any) -> None:
    inner = s3db.store()
    faulty = FaultyStore(
        inner,
        [
            FaultRule("put,put_if_absent,put_if_match", probability=0.05, after=True),
            FaultRule("*", probability=0.1),
        ],
        seed=7,
    )
    config = s3db.settings(l0_max_ssts=1024)
    db = s3db.track(_open_retrying(lambda: Db.open("", config, object_store=faulty)))
    acked, _ = _workload(db, flush_every=2)
    db.close()
    clean = s3db.open()
    _check_acked(clean, acked)


#: The first data WAL SST of a new database (WAL id 1 is the fence object written by open).
FIRST_WAL = "wal/00000000000000000002.sst"
#: The manifest version the first L0 flush of a new database writes (1: created, 2: epoch).
FIRST_L0_MANIFEST = "manifest/00000000000000000003.manifest"


def test_lost_wal_reply_then_failed_readback_is_not_a_fence(s3db: Any) -> None:
    faulty = FaultyStore(
        s3db.store(),
        [
            FaultRule("put_if_absent", prefix=FIRST_WAL, after=True, limit=1),
            FaultRule("get", prefix=FIRST_WAL, limit=1),
        ],
    )
    db = s3db.track(Db.open("", s3db.settings(), object_store=faulty))
    with contextlib.suppress(UnavailableError):  # the lost reply: not acknowledged
        db.put(b"k1", b"v1")
    # k2 waits while the read-back fails once: it may report UnavailableError, but the writer
    # must not consider itself fenced, and both writes become durable on the next attempt
    with contextlib.suppress(UnavailableError):
        db.put(b"k2", b"v2")
    db.flush()
    assert faulty.counts["put_if_absent:transient:after"] == 1
    assert faulty.counts["get:transient"] == 1
    assert db.close_reason is None
    assert db.get(b"k1") == b"v1" and db.get(b"k2") == b"v2"
    db.close()
    clean = s3db.open()
    assert clean.get(b"k1") == b"v1" and clean.get(b"k2") == b"v2"


@pytest.mark.parametrize("after", [False, True], ids=["failed", "lost-reply"])
def test_failed_manifest_write_in_l0_flush_does_not_close_the_db(s3db: Any, after: bool) -> None:
    faulty = FaultyStore(
        s3db.store(),
        [FaultRule("put_if_absent", prefix=FIRST_L0_MANIFEST, after=after, limit=1)],
    )
    db = s3db.track(Db.open("", s3db.settings(), object_store=faulty))
    assert db.metrics()["manifest_id"] == 2  # so the first L0 flush writes FIRST_L0_MANIFEST
    for i in range(20):
        db.put(b"k%02d" % i, b"v%d" % i)
    with contextlib.suppress(UnavailableError):
        db.flush(memtable=True)  # the bug: ClosedError(reason="failed")
    db.flush(memtable=True)
    assert faulty.injected == 1
    assert db.close_reason is None
    m = db.refresh_manifest()
    assert len(m.l0) == 1, [v.id for v in m.l0]  # one L0, not the same view twice
    db.put(b"after", b"flush")
    db.close()
    clean = s3db.open()
    assert [clean.get(b"k%02d" % i) for i in range(20)] == [b"v%d" % i for i in range(20)]
    assert clean.get(b"after") == b"flush"


# --------------------------------------------------------------------------------------------
# a real outage
# --------------------------------------------------------------------------------------------

#: Bound of one durable write during the outage (``wait_durable`` timeout).
WRITE_BOUND_S = 2.0
#: Bound of a plain ``put()`` (no timeout of its own) during the outage: the store reports the
#: dead server within ~0.1 s here (connection refused, 2 quick retries).
PLAIN_PUT_BOUND_S = 5.0
#: How long the server stays down.
OUTAGE_S = 2.5
#: Store options for the outage tests: few, quick retries and short timeouts, so a dead server
#: is reported quickly (connection refused is immediate; a half-open request times out).
OUTAGE_STORE_OPTIONS: dict[str, Any] = {
    "max_retries": 2,
    "retry_base_delay": 0.02,
    "retry_max_delay": 0.2,
    "timeout": 2.0,
}
OUTAGE_SETTINGS: dict[str, Any] = {
    "flush_interval": 0.01,
    "manifest_poll_interval": 0.1,
    "compactor_options": None,
    "garbage_collector_options": None,
}


class Restartable:
    """A private SeaweedFS server that can be killed and restarted on the same ports and data
    directory (so the restarted server holds the same buckets and objects).

    Built on :func:`shale_minio.testing.start_seaweed`, which removes everything at exit; the
    restart reuses that module's command line, child environment and readiness probe
    (``_command``, ``_child_env``, ``_death_signal_preexec``, ``_wait_ready``: private helpers,
    there being no public restart API).
    """

    def __init__(self, server: seaweed.SeaweedServer) -> None:
        self.server = server

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the server and wait for it to exit."""
        self.server.process.send_signal(sig)
        self.server.process.wait(seaweed.STOP_TIMEOUT)

    def restart(self) -> float:
        """Start ``weed`` again with the same flags, ports and ``-dir``; return seconds to ready."""
        assert not self.server.alive()
        started = time.monotonic()
        with open(self.server.home / "weed.out", "ab") as out:
            self.server.process = subprocess.Popen(
                seaweed._command(seaweed.find_weed(), self.server.home, self.server.ports),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=seaweed._child_env(self.server.access_key, self.server.secret_key),
                cwd=self.server.home,
                start_new_session=True,
                preexec_fn=seaweed._death_signal_preexec(),
            )
        seaweed._wait_ready(self.server, time.monotonic() + seaweed.START_TIMEOUT)
        return time.monotonic() - started


@pytest.fixture
def private_s3() -> Iterator[Restartable]:
    """A SeaweedFS server of this test alone (fails instead of skipping under ``CI``)."""
    with seaweed.start_seaweed(seaweed.require_weed()) as server:
        yield Restartable(server)


def _open_private(srv: Restartable, bucket: str) -> Db:
    return Db.open(
        f"s3://{bucket}/outage",
        Settings(**OUTAGE_SETTINGS),
        store_options={**srv.server.options(), **OUTAGE_STORE_OPTIONS},
    )


def test_outage_durable_writes_fail_then_recover(private_s3: Restartable) -> None:
    srv = private_s3
    bucket = srv.server.make_bucket()
    db = _open_private(srv, bucket)
    try:
        acked: dict[bytes, bytes] = {}
        failed: list[tuple[bytes, Any]] = []  # (key, handle) of writes that raised
        phase = {"name": "before"}
        per_phase: dict[str, dict[str, int]] = {}
        slowest = [0.0]
        lock = threading.Lock()
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            i = 0
            try:
                while not stop.is_set():
                    key, value = b"o%d-%05d" % (w, i), _value(w, i)
                    i += 1
                    first = phase["name"]
                    started = time.monotonic()
                    handle = db.put(key, value, durable=False)
                    try:
                        handle.wait_durable(WRITE_BOUND_S)
                        outcome = "ok"
                    except UnavailableError:
                        outcome = "unavailable"
                    elapsed = time.monotonic() - started
                    last = phase["name"]
                    # a write is counted in a phase only if it started and ended in it
                    name = first if first == last else f"{first}->{last}"
                    with lock:
                        slowest[0] = max(slowest[0], elapsed)
                        counts = per_phase.setdefault(name, {"ok": 0, "unavailable": 0})
                        counts[outcome] += 1
                        if outcome == "ok":
                            acked[key] = value
                        else:
                            failed.append((key, handle))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        db.flush(memtable=True)  # an L0 from before the outage, too
        time.sleep(0.3)
        srv.kill(signal.SIGKILL)
        phase["name"] = "outage"  # the server is dead from here on
        time.sleep(OUTAGE_S)
        phase["name"] = "restarting"
        restart_s = srv.restart()
        phase["name"] = "after"
        deadline = time.monotonic() + 20
        while per_phase.get("after", {}).get("ok", 0) < 4 * WRITERS:
            assert time.monotonic() < deadline, per_phase
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)

        # before: all fine; during the outage: every write failed, none hung past its bound
        assert per_phase["before"]["ok"] > 0 and per_phase["before"]["unavailable"] == 0
        ended_down = [c for name, c in per_phase.items() if name.endswith("outage")]
        # nothing that started after the server died was acknowledged while it was dead (a
        # write that started before may have been stored just before the kill: "before->outage";
        # one that ended while restart() ran may have been stored once the server was back up,
        # before restart() returned: "outage->restarting")
        down = [c for name, c in per_phase.items() if name == "outage"]
        assert sum(c["ok"] for c in down) == 0, per_phase
        assert sum(c["unavailable"] for c in ended_down) >= WRITERS, per_phase
        assert slowest[0] < WRITE_BOUND_S + 1.0, slowest
        assert per_phase["after"]["ok"] >= 4 * WRITERS, per_phase
        assert restart_s < 30

        # the writes that failed stay queued and become durable once the store is back
        for _key, handle in failed:
            handle.wait_durable(30)
        assert db.close_reason is None
        db.close()
    finally:
        if db.close_reason is None:
            db.close()

    # nothing acknowledged (and nothing queued) is lost
    again = _open_private(srv, bucket)
    try:
        _check_acked(again, acked)
        failed_keys = [k for k, _ in failed]
        assert failed_keys
        assert all(again.get(k) is not None for k in failed_keys)
    finally:
        again.close()


def test_outage_plain_durable_put_raises_instead_of_hanging(private_s3: Restartable) -> None:
    srv = private_s3
    bucket = srv.server.make_bucket()
    db = _open_private(srv, bucket)
    outcomes: list[tuple[str, float]] = []

    def durable_put(key: bytes) -> None:
        started = time.monotonic()
        try:
            db.put(key, b"x")
            outcomes.append(("ok", time.monotonic() - started))
        except UnavailableError:
            outcomes.append(("unavailable", time.monotonic() - started))
        except BaseException as exc:
            outcomes.append((repr(exc), time.monotonic() - started))

    threads: list[threading.Thread] = []
    try:
        db.put(b"before", b"outage")
        srv.kill(signal.SIGKILL)
        for n in range(2):  # one after the other
            t = threading.Thread(target=durable_put, args=(b"during-%d" % n,))
            threads.append(t)
            t.start()
            t.join(PLAIN_PUT_BOUND_S)
            assert not t.is_alive(), f"durable put #{n} still blocked; outcomes so far {outcomes}"
            assert outcomes[-1][0] == "unavailable", outcomes
    finally:
        if not srv.server.alive():
            srv.restart()
        for t in threads:
            t.join(30)
        db.close()
    again = _open_private(srv, bucket)
    try:
        assert again.get(b"before") == b"outage"
    finally:
        again.close()


def test_outage_close_returns(private_s3: Restartable) -> None:
    srv = private_s3
    bucket = srv.server.make_bucket()
    db = _open_private(srv, bucket)
    raised: list[BaseException] = []

    def close() -> None:
        try:
            db.close()
        except BaseException as exc:
            raised.append(exc)

    closer = threading.Thread(target=close)
    try:
        db.put(b"before", b"outage")
        srv.kill(signal.SIGKILL)
        with contextlib.suppress(UnavailableError):
            db.put(b"during", b"x")  # fails: its WAL upload is now being retried
        closer.start()
        closer.join(PLAIN_PUT_BOUND_S)
        assert not closer.is_alive(), "close() still blocked during the outage"
        assert db.close_reason == "failed"
        # close() says what it could not flush instead of pretending it was clean
        (err,) = raised
        assert isinstance(err, UnavailableError) and "not flushed" in str(err), err
    finally:
        if not srv.server.alive():
            srv.restart()
        if closer.is_alive():
            closer.join(30)
        else:
            db.close()
    again = _open_private(srv, bucket)
    try:
        assert again.get(b"before") == b"outage"
    finally:
        again.close()
