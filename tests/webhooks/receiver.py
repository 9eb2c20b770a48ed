"""A real HTTP server in a thread that records what it receives and answers from a script."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``answers`` are status codes used in turn (the last one repeats); ``delay`` seconds
    are slept before answering (to provoke timeouts)."""

    port: int = 0
    answers: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/charter"

    def events(self) -> list[str]:
        return [r.headers["X-Charter-Event"] for r in self.received]


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            n = len(receiver.received)
            receiver.received.append(Received(self.path, dict(self.headers.items()), body))
            if receiver.delay:
                time.sleep(receiver.delay)
            code = receiver.answers[min(n, len(receiver.answers) - 1)]
            reply = json.dumps({"seen": n + 1}).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


@contextmanager
def running_receiver(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(**options)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
