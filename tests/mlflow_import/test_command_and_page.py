"""``manage.py import_mlflow`` and the administrators' import page."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audits.models import AuditEvent
from registry.models import MlflowImportJob, ModelVersion
from tests.mlflow_import.store import Store


def _run(*args: str) -> str:
    out = StringIO()
    call_command("import_mlflow", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_command_imports_then_reports_nothing_to_do(world: Any, mlflow_store: Store) -> None:
    uc = str(world.uc_a.pk)
    dry = _run("--tracking-uri", mlflow_store.uri, "--use-case", uc, "--dry-run")
    assert "dry run: nothing was saved" in dry and "versions: 10 created" in dry
    assert not ModelVersion.objects.filter(parameters__mlflow__model="churn").exists()

    before = AuditEvent.objects.order_by("-seq").first().seq
    first = _run("--tracking-uri", mlflow_store.uri, "--use-case", uc)
    assert "models: 3 created" in first and "versions: 10 created" in first
    assert "credit-scorer v3 → credit-scorer@3" in first
    assert "Not mapped:" in first and "alias 'champion'" in first
    events = AuditEvent.objects.filter(seq__gt=before)
    assert events.count() == 33
    assert set(events.values_list("channel", flat=True)) == {"command"}

    start = AuditEvent.objects.order_by("-seq").first().seq
    second = json.loads(_run("--tracking-uri", mlflow_store.uri, "--use-case", uc, "--json"))
    assert second["audit_events"] == 0
    assert second["counts"]["versions"] == {"unchanged": 10}
    assert AuditEvent.objects.order_by("-seq").first().seq == start


@pytest.fixture
def impatient_mlflow(monkeypatch: Any) -> None:
    """MLflow's HTTP client retries an unreachable server for minutes by default."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_command_refusals(world: Any, mlflow_store: Store, impatient_mlflow: None) -> None:
    with pytest.raises(CommandError, match="unknown use case"):
        _run("--tracking-uri", mlflow_store.uri, "--use-case", "999999")
    with pytest.raises(CommandError, match="no user"):
        _run("--tracking-uri", mlflow_store.uri, "--as", "nobody")
    uc = str(world.uc_a.pk)
    with pytest.raises(CommandError, match="unknown use case"):  # invisible to them
        _run("--tracking-uri", mlflow_store.uri, "--use-case", uc, "--as", "contrib_b")
    with pytest.raises(CommandError, match="may not"):  # visible, not contributable
        _run("--tracking-uri", mlflow_store.uri, "--use-case", uc, "--as", "viewer_a")
    with pytest.raises(CommandError, match="cannot read MLflow"):
        _run("--tracking-uri", "http://127.0.0.1:9/", "--use-case", str(world.uc_a.pk))


def _browser(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def test_page_runs_the_import_on_a_worker_and_shows_the_report(
    world: Any, mlflow_store: Store, django_capture_on_commit_callbacks: Any
) -> None:
    admin = _browser(world, "admin")
    assert admin.get("/import/mlflow/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            "/import/mlflow/",
            {"tracking_uri": mlflow_store.uri, "use_case": world.uc_b.pk, "dry_run": ""},
        )
    assert response.status_code == 302
    job = MlflowImportJob.objects.get()
    assert response["Location"] == f"/import/mlflow/{job.pk}/"
    assert job.state == "done" and job.report["counts"]["versions"] == {"created": 10}
    page = admin.get(response["Location"]).content.decode()
    assert "credit-scorer@3" in page and "10 created" in page and "alias &#x27;prod&#x27;" in page
    assert (
        ModelVersion.objects.filter(use_case=world.uc_b, registered_by=world.users["admin"]).count()
        == 10
    )
    created = AuditEvent.objects.get(object_type="registry.mlflowimportjob")
    assert (
        created.actor_repr == "admin_user" and created.changes["after"]["use_case"] == world.uc_b.pk
    )
    fragment = admin.get(response["Location"], headers={"HX-Request": "true"})
    assert b"<html" not in fragment.content and b"mlflow-job" in fragment.content


def test_page_is_for_administrators_and_refuses_passwords(world: Any) -> None:
    for who in ("contributor_a", "board", "auditor", "outsider"):
        browser = _browser(world, who)
        assert browser.get("/import/mlflow/").status_code == 403, who
        assert browser.post("/import/mlflow/", {"tracking_uri": "http://x"}).status_code == 403
    admin = _browser(world, "admin")
    refused = admin.post(
        "/import/mlflow/", {"tracking_uri": "postgresql://mlflow:s3cret@db/mlflow"}
    )
    assert refused.status_code == 200 and b"leave the password out" in refused.content
    assert not MlflowImportJob.objects.exists()


def test_a_failed_import_is_shown_as_such(
    world: Any, django_capture_on_commit_callbacks: Any, impatient_mlflow: None
) -> None:
    admin = _browser(world, "admin")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post("/import/mlflow/", {"tracking_uri": "http://127.0.0.1:9/"})
    job = MlflowImportJob.objects.get()
    assert job.state == "failed" and job.error
    assert b"errorlist" in admin.get(response["Location"]).content
