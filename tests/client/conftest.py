"""The client package lives in ``client/src``; it is imported from there (no install step)."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CLIENT_SRC = Path(__file__).resolve().parents[2] / "client" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_sha256: str
    body_size: int
    body: bytes


@dataclass
class Stub:
    """A real HTTP server that answers from a script: ``(status, json body, headers)`` per
    request (the last entry repeats), and records what it received."""

    url: str
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    keep_body: bool = True


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            digest, size, kept = hashlib.sha256(), 0, bytearray()
            while size < length:
                chunk = self.rfile.read(min(65536, length - size))
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                if stub.keep_body:
                    kept += chunk
            stub.seen.append(
                Seen(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    digest.hexdigest(),
                    size,
                    bytes(kept),
                )
            )
            index = min(len(stub.seen) - 1, len(stub.script) - 1)
            status, body, headers = stub.script[index] if stub.script else (200, {}, {})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _answer

    return Handler


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    stub = Stub(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
