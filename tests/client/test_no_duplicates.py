"""Issue 8, acceptance 1: a write whose response is lost (the connection is reset after the
server committed it) or answered 503 is retried by the client with the same Idempotency-Key,
and the server answers from the first write: no duplicates."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from registry.models import ModelVersion
from tests.client.test_live import _portal


class ResettingProxy:
    """A real TCP proxy in front of the live server. The first ``drop`` POSTs are forwarded
    and fully answered by the server, but the client's connection is then reset instead of
    receiving the response; ``fail_503`` further POSTs get a 503 without reaching it."""

    def __init__(self, upstream: str, *, drop: int = 0, fail_503: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.drop, self.fail_503 = drop, fail_503
        self.posts_forwarded = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            body += conn.recv(65536)
        # one request per connection keeps the proxy simple
        head = b"\r\n".join(
            line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")
        )
        return head + b"\r\nConnection: close\r\n\r\n" + body

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = self._read_request(conn)
                if not request:
                    continue
                is_post = request.startswith(b"POST ")
                if is_post and self.fail_503 and self.drop == 0:
                    self.fail_503 -= 1
                    conn.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    continue
                with socket.create_connection(self.upstream) as up:
                    up.sendall(request)
                    response = b""
                    while chunk := up.recv(65536):
                        response += chunk
                if is_post:
                    self.posts_forwarded += 1
                if is_post and self.drop:
                    self.drop -= 1
                    conn.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    continue  # closing with SO_LINGER 0 sends a reset: the response is lost
                conn.sendall(response)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy_factory() -> Iterator[Any]:
    made: list[ResettingProxy] = []

    def make(upstream: str, **kwargs: Any) -> ResettingProxy:
        proxy = ResettingProxy(upstream, **kwargs)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("drop", "fail_503"), [(1, 0), (0, 2), (1, 1)])
def test_lost_responses_and_503s_are_retried_without_duplicates(
    live_server: Any, proxy_factory: Any, drop: int, fail_503: int
) -> None:
    from charter_client import Client

    portal = _portal(live_server, risk_tier="minimal")
    proxy = proxy_factory(live_server.url, drop=drop, fail_503=fail_503)
    client = Client(proxy.url, portal.token, retries=5, backoff=0.05)
    created = client.register_model_version(
        portal.model.pk, "9.9.9", metrics={"auc": 0.9}, intended_use="demo"
    )
    assert created["version"] == "9.9.9"
    assert ModelVersion.objects.filter(model=portal.model, version="9.9.9").count() == 1
    # the server saw the first request (whose answer was lost) and, when it was dropped,
    # the retry too, which it answered from the first without writing again
    assert proxy.posts_forwarded == 1 + drop
