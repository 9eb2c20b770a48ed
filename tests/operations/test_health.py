"""Liveness and readiness: each dependency's state, 503 naming the failing one, no secrets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import Client

from portal import health
from portal.celery import app
from portal.keys import portal_key
from tests.operations.helpers import closed_port

CHECKS = {"database", "migrations", "broker", "signing_key"}


def readyz(**extra: Any) -> tuple[int, dict[str, Any]]:
    response = Client().get("/readyz", **extra)
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response.status_code, response.json()


@pytest.fixture
def fresh_key() -> Iterator[None]:
    """Reload the portal key from the environment before and after the test."""
    portal_key.cache_clear()
    yield
    portal_key.cache_clear()


def test_healthz_answers_without_touching_any_dependency() -> None:
    # No database fixture: any query would fail the test (pytest-django blocks access).
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_all_ok_reports_every_check_with_its_latency() -> None:
    status, body = readyz()
    assert status == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["status"] == "ok", (name, check)
        assert "error" not in check
        assert 0 <= check["latency_ms"] < 5000, (name, check)
    assert body["checks"]["database"]["vendor"] == "postgresql"
    assert body["checks"]["broker"]["transport"] == "redis"
    assert body["checks"]["signing_key"]["key_id"] == portal_key().key_id
    assert body["checks"]["migrations"]["unapplied"] == 0


@pytest.mark.django_db
def test_broker_down_is_503_naming_the_broker_and_hiding_its_password(monkeypatch: Any) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://:s3cret-pw@127.0.0.1:{closed_port()}/0")
    status, body = readyz()
    assert status == 503
    assert body["status"] == "fail" and body["failing"] == ["broker"]
    broker = body["checks"]["broker"]
    assert broker["status"] == "fail"
    assert "ConnectionError" in broker["error"] and "refused" in broker["error"].lower()
    for name in CHECKS - {"broker"}:
        assert body["checks"][name]["status"] == "ok", name
    assert "s3cret-pw" not in str(body)


@pytest.mark.django_db
def test_a_broker_that_never_answers_fails_within_the_timeout(
    monkeypatch: Any, settings: Any
) -> None:
    settings.CHARTER_READINESS_TIMEOUT_S = 0.5
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{port}/0")
        start = time.monotonic()
        status, body = readyz()
        elapsed = time.monotonic() - start
    assert status == 503 and body["failing"] == ["broker"]
    assert "Timeout" in body["checks"]["broker"]["error"]
    assert elapsed < 2.0, elapsed


@pytest.mark.django_db
def test_signing_key_missing_is_503_with_a_clear_message(
    monkeypatch: Any, tmp_path: Path, fresh_key: None
) -> None:
    missing = tmp_path / "portal-key.pem"
    monkeypatch.delenv("CHARTER_SIGNING_KEY", raising=False)
    monkeypatch.setenv("CHARTER_SIGNING_KEY_FILE", str(missing))
    portal_key.cache_clear()
    status, body = readyz()
    assert status == 503
    assert body["failing"] == ["signing_key"]
    error = body["checks"]["signing_key"]["error"]
    assert error.startswith("SigningKeyUnavailable: ")
    assert f"CHARTER_SIGNING_KEY_FILE={missing}" in error and "No such file" in error
    for name in CHECKS - {"signing_key"}:
        assert body["checks"][name]["status"] == "ok", name


@pytest.mark.django_db
def test_unreadable_signing_key_is_reported_without_its_contents(
    monkeypatch: Any, tmp_path: Path, fresh_key: None
) -> None:
    garbage = tmp_path / "key.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5\n-----END PRIVATE KEY-----\n")
    monkeypatch.setenv("CHARTER_SIGNING_KEY_FILE", str(garbage))
    portal_key.cache_clear()
    status, body = readyz()
    assert status == 503 and body["failing"] == ["signing_key"]
    assert "not a readable PEM private key" in body["checks"]["signing_key"]["error"]
    assert "bm90LWEta2V5" not in str(body)


@pytest.mark.django_db
def test_database_unreachable_fails_database_and_migrations_only(monkeypatch: Any) -> None:
    monkeypatch.setattr(health, "_migrations_ok", False)  # as in a process just started
    settings_dict = connections[DEFAULT_DB_ALIAS].settings_dict
    monkeypatch.setitem(settings_dict, "PORT", str(closed_port()))
    monkeypatch.setitem(settings_dict, "PASSWORD", "db-s3cret")
    status, body = readyz()
    assert status == 503
    assert body["failing"] == ["database", "migrations"]
    assert "OperationalError" in body["checks"]["database"]["error"]
    assert body["checks"]["broker"]["status"] == "ok"
    assert body["checks"]["signing_key"]["status"] == "ok"
    assert "db-s3cret" not in str(body)


@pytest.mark.django_db
def test_embedded_filesystem_broker(monkeypatch: Any, tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    options = {"data_folder_in": str(queue), "data_folder_out": str(queue)}
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    monkeypatch.setitem(app.conf, "broker_transport_options", options)
    status, body = readyz()
    assert status == 503 and body["failing"] == ["broker"]
    assert "data_folder_in folder does not exist" in body["checks"]["broker"]["error"]
    queue.mkdir()
    status, body = readyz()
    assert status == 200, body
    assert body["checks"]["broker"]["transport"] == "filesystem"


@pytest.mark.django_db
def test_probes_skip_the_host_check_and_https_redirect(settings: Any) -> None:
    """A kubelet probes the pod IP over plain HTTP; the rest of the site refuses that."""
    settings.ALLOWED_HOSTS = ["charter.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    pod = {"HTTP_HOST": "10.1.2.3:8000"}
    assert Client().get("/healthz", **pod).status_code == 200
    assert Client().get("/readyz", **pod).status_code == 200
    assert Client().get("/login/", **pod).status_code == 400  # DisallowedHost
    site = {"HTTP_HOST": "charter.example.org"}
    assert Client().get("/login/", **site).status_code == 301  # to https
