"""/metrics: restricted, and each named figure moves by what the work did.

The big test does real work through the real paths — an API read, an audited write, a
telemetry batch posted to the intake endpoint and folded by a real Celery worker process on
Redis, a drift computation — scraping before and after each step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audits.models import AuditEvent, Checkpoint
from audits.services import create_checkpoint
from portal import roles
from portal.celery import app
from tests import factories as f
from tests.monitoring import rig
from tests.operations.helpers import moved, scrape, value
from tests.worker import celery_worker, wait_for
from workers.models import DriftResult, TelemetryBatch

OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}
FOLD = "workers.tasks.fold_telemetry_batch"


# ------------------------------------------------------------------ access


@pytest.mark.django_db
def test_anonymous_from_outside_is_refused(settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-token-123"
    response = Client().get("/metrics", **OUTSIDE)
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.json()["detail"]
    assert b"charter_" not in response.content


@pytest.mark.django_db
def test_the_bearer_token_opens_it_from_anywhere(settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-token-123"
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123", **OUTSIDE)
    assert ok.status_code == 200
    assert b"charter_audit_chain_length" in ok.content
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-124", **OUTSIDE)
    assert wrong.status_code == 403
    basic = Client().get("/metrics", HTTP_AUTHORIZATION="Basic scrape-token-123", **OUTSIDE)
    assert basic.status_code == 403


@pytest.mark.django_db
def test_no_token_configured_means_no_token_accepted(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ", **OUTSIDE)
    assert response.status_code == 403


@pytest.mark.django_db
def test_staff_users_may_read_it_other_users_may_not() -> None:
    staff = Client()
    staff.force_login(f.user("ops_staff", roles=(roles.ADMIN,), is_staff=True))
    assert staff.get("/metrics", **OUTSIDE).status_code == 200
    member = Client()
    member.force_login(f.user("ops_member", roles=(roles.AUDITOR,)))
    assert member.get("/metrics", **OUTSIDE).status_code == 403


@pytest.mark.django_db
def test_allowed_addresses_only_when_not_proxied(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1", "::1", "10.20.0.0/16"]
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="10.21.3.4").status_code == 403
    # Behind a reverse proxy on the same host every request comes from 127.0.0.1.
    proxied = Client().get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert proxied.status_code == 403
    settings.METRICS_ALLOWED_IPS = []
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_a_scrape_on_a_pod_ip_over_http_with_the_token(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["charter.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    settings.METRICS_TOKEN = "scrape-token-123"
    response = Client().get(
        "/metrics", HTTP_HOST="10.1.2.3:8000", HTTP_AUTHORIZATION="Bearer scrape-token-123"
    )
    assert response.status_code == 200


# ------------------------------------------------------------------ figures


@pytest.mark.django_db
def test_audit_checkpoint_figures() -> None:
    client = APIClient()
    client.force_authenticate(f.user("ops_cp", roles=(roles.RISK_OFFICER,)))
    assert client.post("/api/v1/use-cases/", {"name": "cp", "purpose": "p"}).status_code == 201
    checkpoint = create_checkpoint()
    assert checkpoint is not None
    assert client.post("/api/v1/use-cases/", {"name": "cp2", "purpose": "p"}).status_code == 201
    samples = scrape()
    head = AuditEvent.objects.order_by("-seq").first()
    assert value(samples, "charter_audit_chain_length") == head.seq
    last = Checkpoint.objects.order_by("-seq").first()
    assert value(samples, "charter_audit_last_checkpoint_timestamp_seconds") == pytest.approx(
        last.created_at.timestamp()
    )
    assert 0 <= value(samples, "charter_audit_seconds_since_checkpoint") < 60
    assert value(samples, "charter_audit_events_since_checkpoint") == head.seq - last.seq > 0


def _worker_lines(log: Path, offset: int) -> list[dict[str, Any]]:
    lines = []
    with log.open("rb") as handle:
        handle.seek(offset)
        for raw in handle.read().decode(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_each_figure_moves_with_real_work() -> None:
    uc = f.use_case()
    dv = f.dataset_version(f.dataset(uc))
    mv = f.model_version(f.model(uc), training_datasets=[dv])
    rig.install_reference(dv)
    dep = f.deployment(mv)
    client = APIClient()
    client.force_authenticate(f.user("ops_admin", roles=(roles.ADMIN,)))

    # 1. an API read and an audited write
    s0 = scrape()
    listed = client.get("/api/v1/use-cases/")
    assert listed.status_code == 200
    created = client.post("/api/v1/use-cases/", {"name": "Ops", "purpose": "metrics"})
    assert created.status_code == 201, created.json()
    s1 = scrape()
    hist = "charter_http_request_duration_seconds_count"
    assert moved(s0, s1, hist, view="api:usecase-list", method="GET", status="200") == 1
    assert moved(s0, s1, hist, view="api:usecase-list", method="POST", status="201") == 1
    ids = [listed["X-Request-ID"], created["X-Request-ID"]]
    assert AuditEvent.objects.filter(request_id=ids[1]).exists()
    written = AuditEvent.objects.filter(request_id__in=ids).count()
    assert moved(s0, s1, "charter_audit_chain_length") == written
    assert value(s1, "charter_audit_chain_length") == AuditEvent.objects.order_by("-seq")[0].seq

    # 2. a telemetry batch through the intake endpoint, queued while no worker runs
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    app.conf.task_always_eager = False
    try:
        posted = client.post(
            rig.telemetry_url(dep),
            {"idempotency_key": "ops-1", "timestamp": rig.hours_ago(0.01), **rig.rows(240)},
            format="json",
            HTTP_X_REQUEST_ID="ops-telemetry-request-1",
        )
    finally:
        app.conf.task_always_eager = True
    assert posted.status_code == 202, posted.json()
    s2 = scrape()
    assert moved(s1, s2, "charter_telemetry_batches_accepted_total", kind="rows") == 1
    assert moved(s1, s2, "charter_telemetry_rows_accepted_total", kind="rows") == 240
    assert value(s2, "charter_celery_queue_depth", queue="celery") == 1
    assert moved(s1, s2, hist, view="api-telemetry", method="POST", status="202") == 1
    # a replay of the same key and body is not counted again
    replay = client.post(
        rig.telemetry_url(dep),
        {"idempotency_key": "ops-1", "timestamp": posted.json()["timestamp"], **rig.rows(240)},
        format="json",
    )
    assert replay.status_code in (200, 202), replay.json()
    assert TelemetryBatch.objects.count() == 1

    # 3. a real worker process takes the queued fold; its counters reach this scrape
    log = Path(os.environ.get("CHARTER_VAR_DIR", "/tmp")) / "worker-test.log"
    offset = log.stat().st_size if log.exists() else 0
    with celery_worker(purge=False, extra_env={"LOG_FORMAT": "json"}):
        assert wait_for(
            lambda: TelemetryBatch.objects.filter(folded_at__isnull=False).exists(), timeout=90
        ), "the worker did not fold the batch; see worker-test.log"
        # the success signal fires after the fold's transaction: wait for the counter
        assert wait_for(
            lambda: (
                moved(s2, scrape(), "charter_celery_tasks_total", task=FOLD, state="success") == 1
            ),
            timeout=30,
        )
    s3 = scrape()
    assert moved(s2, s3, "charter_celery_tasks_total", task=FOLD, state="success") == 1
    assert moved(s2, s3, "charter_celery_tasks_total", task=FOLD, state="failure") == 0
    assert moved(s2, s3, "charter_telemetry_batches_folded_total", outcome="folded") == 1
    assert moved(s2, s3, "charter_celery_task_duration_seconds_count", task=FOLD) == 1
    assert value(s3, "charter_celery_queue_depth", queue="celery") == 0

    # the worker's JSON log: the fold task's lines carry its id and the enqueuing request's id
    lines = [
        line
        for line in _worker_lines(log, offset)
        if line.get("parent_request_id") == "ops-telemetry-request-1"
    ]
    assert lines, "no worker log line carries the request id of the telemetry POST"
    assert {line["task_name"] for line in lines} == {FOLD}
    assert all(len(line["task_id"]) == 36 for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)

    # 4. a drift computation
    evaluated = client.post(f"/api/v1/deployments/{dep.pk}/evaluate/")
    assert evaluated.status_code == 200, evaluated.json()
    s4 = scrape()
    verdict = "true" if DriftResult.objects.get().dataset_drift else "false"
    assert moved(s3, s4, "charter_drift_computations_total", dataset_drift=verdict) == 1
    other = "false" if verdict == "true" else "true"
    assert moved(s3, s4, "charter_drift_computations_total", dataset_drift=other) == 0


@pytest.mark.django_db
def test_queue_depth_on_the_embedded_filesystem_broker(monkeypatch: Any, tmp_path: Path) -> None:
    """``make demo``'s broker: messages are files in a folder."""
    from kombu import Connection

    queue = tmp_path / "queue"
    queue.mkdir()
    options = {"data_folder_in": str(queue), "data_folder_out": str(queue)}
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    monkeypatch.setitem(app.conf, "broker_transport_options", options)
    assert value(scrape(), "charter_celery_queue_depth", queue="celery") == 0
    with Connection("filesystem://", transport_options=options) as conn:
        simple = conn.SimpleQueue("celery")
        for i in range(3):
            simple.put({"n": i})
        simple.close()
    assert len(list(queue.glob("*.celery.msg"))) == 3
    samples = scrape()
    assert value(samples, "charter_celery_queue_depth", queue="celery") == 3
    assert value(samples, "charter_metrics_source_up", source="broker") == 1


@pytest.mark.django_db
def test_a_broker_outage_does_not_break_the_scrape(monkeypatch: Any) -> None:
    from tests.operations.helpers import closed_port

    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{closed_port()}/0")
    samples = scrape()
    assert value(samples, "charter_metrics_source_up", source="broker") == 0
    assert value(samples, "charter_metrics_source_up", source="database") == 1
    assert ("charter_celery_queue_depth", frozenset({("queue", "celery")})) not in samples
    assert value(samples, "charter_audit_chain_length") >= 0
