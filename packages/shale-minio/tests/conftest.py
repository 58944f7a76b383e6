"""Fixtures of shale-minio's own tests: a closed port and a scripted fake S3 endpoint.

The real server fixtures (``s3_server``, ``s3_store``) come from the package's pytest plugin,
:mod:`shale_minio.testing`. The fake endpoint here answers each request from a script so tests
can produce exact failure sequences (503 then 200, a dropped connection, a hang) and inspect
the requests that reached the wire (headers, count).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

#: A scripted reply: ``(status, headers, body)``, or ``"drop"`` (close without answering), or
#: ``("hang", seconds)`` (answer nothing for that long, then close).
Reply = Any


def s3_error(status: int, code: str, message: str = "scripted") -> Reply:
    """An S3-style XML error reply."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<Resource>/x</Resource><RequestId>fake</RequestId></Error>"
    ).encode()
    return (status, {"Content-Type": "application/xml"}, body)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeS3:
    """A scripted HTTP endpoint; ``script`` is consumed one reply per request."""

    endpoint: str = ""
    script: list[Reply] = field(default_factory=list)
    default: Reply = (200, {}, b"")
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else self.default

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    error = staticmethod(s3_error)


def _handler(fake: FakeS3) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = fake.next_reply(
                Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
            )
            if reply == "drop":
                self.close_connection = True
                return
            if isinstance(reply, tuple) and reply[0] == "hang":
                time.sleep(reply[1])
                self.close_connection = True
                return
            status, headers, payload = reply
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    return Handler


@pytest.fixture
def fake_s3() -> Iterator[FakeS3]:
    """A scripted fake S3 endpoint on 127.0.0.1 (see :class:`FakeS3`)."""
    fake = FakeS3()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
