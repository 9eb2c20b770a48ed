"""Structured logs carry the request id that the request's audit events carry."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from audits.models import AuditEvent
from portal import roles
from portal.celery import app
from tests import factories as f


def _handler(fmt: str) -> tuple[logging.Handler, io.StringIO]:
    """A handler built from settings.LOGGING's formatter and filter, writing to a buffer."""
    stream = io.StringIO()
    config = {
        **settings.LOGGING,
        "handlers": {
            "capture": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": fmt,
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["capture"], "level": "INFO"},
        "loggers": {},
        "incremental": False,
    }
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.config.dictConfig(config)
    handler = root.handlers[0]
    root.handlers, root.level = saved
    return handler, stream


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    handler, stream = _handler("json")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    handler, stream = _handler("text")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.django_db
def test_the_access_line_and_the_audit_event_share_the_request_id(json_log: io.StringIO) -> None:
    user = f.user("log_risk", roles=(roles.RISK_OFFICER,))
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/use-cases/", {"name": "Logged", "purpose": "p"})
    assert response.status_code == 201
    request_id = response["X-Request-ID"]
    event = AuditEvent.objects.get(request_id=request_id, object_type="registry.usecase")
    access = [line for line in lines(json_log) if line["logger"] == "charter.request"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == event.request_id == request_id
    assert line["user"] == "log_risk" == event.actor_repr
    assert line["method"] == "POST" and line["path"] == "/api/v1/use-cases/"
    assert line["status"] == 201 and line["view"] == "api:usecase-list"
    assert line["level"] == "INFO" and isinstance(line["duration_ms"], float)
    assert line["time"].endswith("+00:00") and "T" in line["time"]
    assert line["message"].startswith("POST /api/v1/use-cases/ 201 ")


@pytest.mark.django_db
def test_a_supplied_request_id_is_echoed_logged_and_audited(json_log: io.StringIO) -> None:
    client = APIClient()
    client.force_authenticate(f.user("log_risk2", roles=(roles.RISK_OFFICER,)))
    response = client.post(
        "/api/v1/use-cases/",
        {"name": "Traced", "purpose": "p"},
        HTTP_X_REQUEST_ID="lb-trace-0001",
    )
    assert response["X-Request-ID"] == "lb-trace-0001"
    assert AuditEvent.objects.filter(request_id="lb-trace-0001").exists()
    assert [line["request_id"] for line in lines(json_log)] == ["lb-trace-0001"]


@pytest.mark.django_db
def test_djangos_own_4xx_lines_carry_the_request_id_too(json_log: io.StringIO) -> None:
    response = Client().get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    found = {line["logger"]: line for line in lines(json_log)}
    assert found["django.request"]["request_id"] == response["X-Request-ID"]
    assert found["django.request"]["path"] == "/metrics"
    assert "request" not in found["django.request"]  # not the object's repr
    assert found["charter.request"]["request_id"] == response["X-Request-ID"]


@pytest.mark.django_db
def test_a_task_run_during_a_request_logs_its_id(json_log: io.StringIO) -> None:
    """Eager here (a real worker's lines are checked in test_metrics): task id and name."""
    from audits.tasks import make_checkpoint

    assert app.conf.task_always_eager
    f.use_case()  # something to checkpoint
    result = make_checkpoint.delay()
    task_lines = [line for line in lines(json_log) if line.get("task_id") == result.id]
    assert task_lines, lines(json_log)
    assert {line["task_name"] for line in task_lines} == {"audits.tasks.make_checkpoint"}


@pytest.mark.django_db
def test_text_format_shows_the_request_id(text_log: io.StringIO) -> None:
    client = APIClient()
    client.force_authenticate(f.user("log_risk3", roles=(roles.RISK_OFFICER,)))
    response = client.get("/api/v1/use-cases/")
    out = text_log.getvalue()
    assert f"[request_id={response['X-Request-ID']} user=log_risk3]" in out
    assert "charter.request" in out and "GET /api/v1/use-cases/ 200" in out
