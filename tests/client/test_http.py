"""The client's HTTP behaviour against real local HTTP servers (no Charter, no Django):
retries with one idempotency key, refused connections, error mapping, streaming uploads."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from charter_client import (
    ApprovalTimeout,
    BadRequest,
    CharterError,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    ServerError,
    TooLarge,
    Unauthorized,
)

from tests.client.conftest import CLIENT_SRC, Stub


def _client(url: str, **kw: Any) -> Client:
    kw.setdefault("backoff", 0.01)
    return Client(url, "chtr_abc_secret", **kw)


def test_503_twice_then_201_is_retried_with_the_same_idempotency_key(stub: Stub) -> None:
    stub.script = [
        (503, {"detail": "busy"}, {}),
        (503, {"detail": "busy"}, {}),
        (201, {"id": 7, "state": "submitted"}, {}),
    ]
    result = _client(stub.url).request_approval(12, "production")
    assert result == {"id": 7, "state": "submitted"}
    assert len(stub.seen) == 3
    keys = {s.headers["Idempotency-Key"] for s in stub.seen}
    assert len(keys) == 1 and len(keys.pop()) >= 16
    assert {s.body_sha256 for s in stub.seen} == {stub.seen[0].body_sha256}  # same body
    assert all(s.headers["Authorization"] == "Bearer chtr_abc_secret" for s in stub.seen)
    assert stub.seen[0].path == "/api/v1/approval-requests/"
    # a second logical call gets a key of its own
    stub.script = [(201, {"id": 8}, {})]
    stub.seen.clear()
    _client(stub.url).request_approval(13)
    assert stub.seen[0].headers["Idempotency-Key"] not in keys


def test_caller_supplied_idempotency_key_and_retry_after(stub: Stub) -> None:
    stub.script = [(429, {"detail": "slow down"}, {"Retry-After": "0"}), (200, {"ok": True}, {})]
    client = _client(stub.url, backoff=60)  # Retry-After: 0 wins over the backoff
    assert client.post("things/", {"a": 1}, idempotency_key="run-42-step-3") == {"ok": True}
    assert [s.headers["Idempotency-Key"] for s in stub.seen] == ["run-42-step-3"] * 2


def test_wait_for_approval_polls_through_an_outage_and_times_out(stub: Stub) -> None:
    stub.script = [
        (200, {"id": 5, "state": "in_review"}, {}),
        (500, {"detail": "boom"}, {}),
        (200, {"id": 5, "state": "in_review"}, {}),
        (200, {"id": 5, "state": "changes_requested"}, {}),
    ]
    seen: list[str] = []
    final = _client(stub.url).wait_for_approval(
        5, 30, 0.01, on_poll=lambda r: seen.append(r["state"])
    )
    assert final["state"] == "changes_requested"
    assert seen == ["in_review", "in_review", "changes_requested"]
    assert all(s.path == "/api/v1/approval-requests/5/" for s in stub.seen)

    stub.script, stub.seen[:] = [(200, {"id": 5, "state": "in_review"}, {})], []
    with pytest.raises(ApprovalTimeout) as exc:
        _client(stub.url).wait_for_approval(5, 0.2, 0.05)
    assert exc.value.request["state"] == "in_review" and len(stub.seen) >= 2


def test_retries_give_up_with_server_error(stub: Stub) -> None:
    stub.script = [(502, {"detail": "bad gateway"}, {})]
    with pytest.raises(ServerError) as exc:
        _client(stub.url, retries=2).get("model-versions/1/")
    assert exc.value.status == 502 and exc.value.detail == "bad gateway"
    assert len(stub.seen) == 3
    assert "Idempotency-Key" not in stub.seen[0].headers  # reads carry none


def test_connection_refused_is_retried_then_raises(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(f"http://127.0.0.1:{closed_port}", retries=3)
    with (
        caplog.at_level(logging.WARNING, logger="charter_client"),
        pytest.raises(ConnectionFailed) as exc,
    ):
        client.get_approval(1)
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3
    assert "ConnectionRefusedError" in retries[0].getMessage()
    assert exc.value.status is None
    assert "after 4 attempts" in exc.value.detail


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, TooLarge),
        (500, ServerError),
    ],
)
def test_error_statuses_raise_at_once_with_detail_and_field_errors(
    stub: Stub, status: int, cls: type[CharterError]
) -> None:
    body = {"detail": "Nope.", "errors": {"version": ["is required"], "dataset": ["bad id"]}}
    stub.script = [(status, body, {"X-Request-ID": "req-12345678"})]
    with pytest.raises(cls) as exc:
        _client(stub.url).register_model_version(1, "1.0")
    assert len(stub.seen) == 1  # not retried
    err = exc.value
    assert err.status == status and err.detail == "Nope."
    assert err.errors == {"version": ["is required"], "dataset": ["bad id"]}
    assert err.request_id == "req-12345678"
    assert "version: is required" in str(err)


def test_dataset_upload_is_streamed_not_read_into_memory(stub: Stub, tmp_path: Path) -> None:
    stub.keep_body = False
    data = tmp_path / "images.bin"
    block = os.urandom(1 << 20)
    with data.open("wb") as out:
        for _ in range(24):
            out.write(block)
    stub.script = [(201, {"id": 3}, {})]
    tracemalloc.start()
    try:
        _client(stub.url).register_dataset_version(5, "v1", data, license="CC-BY-4.0")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes for a 24 MiB upload"
    seen = stub.seen[0]
    assert seen.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert seen.body_size == int(seen.headers["Content-Length"]) > 24 << 20


def test_multipart_fields_and_csv_facts(stub: Stub, tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("age,income,city\n31,1200.5,Lyon\n45,,Nice\n")
    stub.script = [(201, {"id": 3}, {})]
    _client(stub.url).register_dataset_version(
        5, "2025-10", csv, derived_from=[1, 2], motivation="why"
    )
    body = stub.seen[0].body.decode()
    sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    for name, value in [
        ("dataset", "5"),
        ("version", "2025-10"),
        ("motivation", "why"),
        ("derived_from", "1"),
        ("derived_from", "2"),
        ("sha256", sha),
        ("row_count", "2"),
        ("size_bytes", str(csv.stat().st_size)),
    ]:
        assert f'name="{name}"\r\n\r\n{value}\r\n' in body
    assert (
        '"schema"\r\n\r\n[{"name": "age", "type": "integer"}, '
        '{"name": "income", "type": "number"}, {"name": "city", "type": "string"}]'
    ) in body
    assert 'name="file"; filename="train.csv"\r\nContent-Type: text/csv' in body
    assert "31,1200.5,Lyon" in body


def test_next_links_stay_on_the_configured_origin() -> None:
    client = Client("https://charter.example.org/portal/api/v1/", "t")
    assert client.api_root == "https://charter.example.org/portal/api/v1/"
    # a next link built by a proxy-unaware server (or another host) keeps our origin
    assert (
        client.url("http://internal:8000/portal/api/v1/datasets/?page=2")
        == "https://charter.example.org/portal/api/v1/datasets/?page=2"
    )
    assert client.url("datasets/", {"page_size": 2, "use_case": None}) == (
        "https://charter.example.org/portal/api/v1/datasets/?page_size=2"
    )


def test_url_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CHARTER_TOKEN", "chtr_x_y")
    client = Client()
    assert client.api_root == "http://127.0.0.1:9/api/v1/" and client.token == "chtr_x_y"
    monkeypatch.delenv("CHARTER_URL")
    with pytest.raises(ValueError, match="CHARTER_URL"):
        Client()


def test_importable_without_django() -> None:
    code = (
        "import sys; sys.modules['django'] = None; sys.modules['rest_framework'] = None\n"
        "import charter_client, charter_client.cli\n"
        "assert 'django' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
        "print(charter_client.__version__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(CLIENT_SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "0.1.0"
