"""Retraining through the API and the pages: templates and their validation, requesting,
cancelling and retrying jobs, the job's own endpoints (only its token), approval of
high-risk jobs (and refusal), the executor configuration check, the job pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client as PageClient
from rest_framework.test import APIClient

from approvals import services as approvals
from portal import roles
from portal.permissions import Access
from tests import factories as f
from tests.retraining import rig
from workers import retraining
from workers.executors.checks import check_executors
from workers.models import RetrainingJob

SLEEP = {"entrypoint": ["sh", "-c", "echo training; sleep 60"], "time_limit_s": 120}


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def w(db: Any) -> rig.World:
    world = rig.world(risk_tier="limited", upload=False)
    from portal.services import grant_access

    grant_access(rig.SYSTEM, world.uc, world.owner, "contribute")
    return world


def test_templates_through_the_api_name_bad_fields(w: rig.World) -> None:
    api = _api(w.owner)
    bad = {"model": w.model.pk, "spec": {"entrypoint": [], "resources": {"gpus": -1}}}
    r = api.post("/api/v1/retraining-templates/", bad, format="json")
    assert r.status_code == 400
    assert {"spec.entrypoint", "spec.resources.gpus"} <= set(r.json()["errors"])
    r = api.post(
        "/api/v1/retraining-templates/",
        {"model": w.model.pk, "spec": {**SLEEP, "env": {"CHARTER_TOKEN": "x"}}},
        format="json",
    )
    assert r.status_code == 400 and "spec.env" in r.json()["errors"]
    r = api.post(
        "/api/v1/retraining-templates/",
        {"model": w.model.pk, "spec": {**SLEEP, "resources": {"gpus": 1, "gpu_type": "a100"}}},
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert r.json()["spec"]["resources"] == {
        "cpus": 1,
        "memory_mb": 1024,
        "gpus": 1,
        "gpu_type": "a100",
    }
    r = api.post(
        "/api/v1/retraining-templates/",
        {"model": w.model.pk, "spec": SLEEP, "executor": "nowhere"},
        format="json",
    )
    assert r.status_code == 400 and "executor" in r.json()["errors"]
    assert _api(f.user()).get("/api/v1/retraining-templates/").json()["count"] == 0


def test_request_cancel_and_retry_through_the_api(
    w: rig.World, django_capture_on_commit_callbacks: Any
) -> None:
    api = _api(w.owner)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post(
            "/api/v1/retraining-jobs/",
            {"model": w.model.pk, "spec": SLEEP, "reason": "new quarter", "trigger": "person"},
            format="json",
        )
    assert r.status_code == 201, r.json()
    url = f"/api/v1/retraining-jobs/{r.json()['id']}/"
    job = api.get(url).json()  # submitted once the request committed
    assert job["state"] == "queued" and job["trigger"] == "person"
    assert job["base_version"] == w.base.pk and job["dataset_versions"] == [w.dataset_version.pk]
    assert job["requested_by"] == w.owner.username
    assert job["external_id"] == job["key"]
    assert _api(f.user()).get(url).status_code == 404  # not visible outside the use case
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post(url + "cancel/", {"reason": "wrong data"}, format="json")
    assert r.status_code == 200 and r.json()["cancel_requested_at"]
    for _ in range(50):
        if retraining.poll(job["id"]) == "cancelled":
            break
    assert api.get(url).json()["state"] == "cancelled"
    assert api.post(url + "cancel/", {}, format="json").status_code == 409
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post(url + "retry/", {}, format="json")
    assert r.status_code == 201 and r.json()["retry_of"] == job["id"]
    bad = api.post(
        "/api/v1/retraining-jobs/", {"model": w.model.pk, "trigger": "incident"}, format="json"
    )
    assert bad.status_code == 400 and "trigger" in bad.json()["errors"]
    with django_capture_on_commit_callbacks(execute=True):  # stop the retry's process too
        retraining.cancel(Access(user=w.owner), RetrainingJob.objects.get(pk=r.json()["id"]))
    assert "training" in api.get(url + "logs/").json()["logs"]


def test_only_the_jobs_own_token_posts_progress_and_results(w: rig.World) -> None:
    rig.template(w, **SLEEP)
    job = retraining.request_job(rig.SYSTEM, model=w.model, trigger="person")
    secret = retraining._issue_token(job)  # what the executor hands the job
    mine = _bearer(secret)
    url = f"/api/v1/retraining-jobs/{job.pk}/"
    r = mine.post(url + "progress/", {"progress": 0.4, "message": "epoch 4"}, format="json")
    assert r.status_code == 200 and r.json()["percent"] == 40 and r.json()["state"] == "running"
    assert mine.post(url + "progress/", {"progress": 2}, format="json").status_code == 400
    other = _api(w.owner)  # may contribute to the use case, but is not the job
    assert other.post(url + "progress/", {"progress": 0.5}, format="json").status_code == 403
    # the token reaches the job's use case only
    elsewhere = f.use_case(name="Fraud")
    assert mine.get(f"/api/v1/use-cases/{elsewhere.pk}/").status_code == 404
    # a version the job did not register is not its result
    r = mine.post(url + "result/", {"model_version": w.base.pk}, format="json")
    assert r.status_code == 400 and "not registered by this job" in str(r.json())
    r = mine.post(
        "/api/v1/model-versions/",
        {
            "model": w.model.pk,
            "version": "1.0-rt",
            "parent": w.base.pk,
            "training_datasets": [w.dataset_version.pk],
            **rig.CARD,
        },
        format="json",
    )
    assert r.status_code == 201, r.json()
    r = mine.post(url + "result/", {"model_version": r.json()["id"]}, format="json")
    assert r.status_code == 200 and r.json()["release_approval"]
    assert r.json()["result"]["signature_verified"] is False  # no signed artifact posted


def test_a_high_risk_job_waits_for_its_approval_and_ends_if_refused(db: Any) -> None:
    w = rig.world(risk_tier="high", upload=False)
    rig.template(w, **SLEEP)
    job = retraining.request_job(rig.SYSTEM, model=w.model, trigger="person")
    assert job.state == "awaiting_approval"
    req = job.approval
    assert req.kind == "retraining" and req.policy.environment == "retraining"
    assert req.policy.quorum == {"risk officer": 1}
    approvals.decide(Access(user=w.risk), req, verdict="reject", comment="Not this quarter.")
    job.refresh_from_db()
    assert job.state == "cancelled" and "rejected" in job.message
    second = retraining.request_job(rig.SYSTEM, model=w.model, trigger="person")
    assert second.approval != req  # each job has its own request
    retraining.cancel(rig.SYSTEM, second)
    second.refresh_from_db()
    second.approval.refresh_from_db()
    assert second.state == "cancelled" and second.approval.state == "withdrawn"


def test_a_broken_executor_configuration_is_reported_at_startup(settings: Any) -> None:
    assert check_executors() == []
    settings.CHARTER_EXECUTORS = {
        "local": {"class": "workers.executors.local.LocalExecutor"},
        "gone": {"class": "charter_plugins.nothing.Executor"},
        "wrong": {"class": "workers.models.Incident"},
        "typo": {"class": "workers.executors.slurm.SlurmExecutor", "options": {"gpu_flag": "x"}},
        "extra": {"class": "workers.executors.local.LocalExecutor", "option": {}},
    }
    settings.CHARTER_DEFAULT_EXECUTOR = "cluster"
    problems = check_executors()
    ids = sorted(p.id for p in problems)
    assert ids == ["charter.E102"] + ["charter.E103"] * 4
    text = " | ".join(p.msg for p in problems)
    for what in ("cannot import", "is not a workers.executors.Executor", "gpu_flag", "'option'"):
        assert what in text
    settings.CHARTER_EXECUTORS = {}
    assert [p.id for p in check_executors()] == ["charter.E101"]
    settings.CHARTER_EXECUTORS = {
        "ray": {"class": "workers.executors.ray_jobs.RayExecutor", "options": {"address": "x"}}
    }
    settings.CHARTER_DEFAULT_EXECUTOR = "ray"
    (problem,) = check_executors()
    assert problem.id == "charter.E103" and "dashboard URL" in problem.msg
    with pytest.raises(Exception, match="charter.E103"):
        call_command("check", fail_level="ERROR")


def test_job_pages(w: rig.World, django_capture_on_commit_callbacks: Any) -> None:
    rig.template(w, **SLEEP)
    from workers import services

    incident = services.open_incident(rig.SYSTEM, w.deployment, title="Accuracy dropped")
    with django_capture_on_commit_callbacks(execute=True):
        services.request_retraining(Access(user=w.owner), incident, reason="see the dashboard")
    job = RetrainingJob.objects.get(incident=incident)
    assert job.trigger == "person" and job.requested_by == w.owner
    pages = PageClient()
    pages.force_login(w.owner)
    r = pages.get("/retraining/")
    assert r.status_code == 200 and f"#{job.pk}" in r.content.decode()
    r = pages.get(f"/retraining/{job.pk}/")
    html = r.content.decode()
    assert r.status_code == 200
    assert f'hx-get="/retraining/{job.pk}/status/"' in html and "<progress" in html
    assert incident.get_absolute_url() in html and w.base.get_absolute_url() in html
    assert "Cancel job" in html and "local process" in html
    assert pages.get(f"/retraining/{job.pk}/status/").status_code == 200
    assert f"/retraining/{job.pk}/" in pages.get(incident.get_absolute_url()).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        r = pages.post(f"/retraining/{job.pk}/act/", {"action": "cancel"})
    assert r.status_code == 302
    for _ in range(50):
        if retraining.poll(job.pk) == "cancelled":
            break
    html = pages.get(f"/retraining/{job.pk}/").content.decode()
    assert "Retry" in html and "Cancel job" not in html
    outsider = PageClient()
    outsider.force_login(f.user(roles=(roles.CONTRIBUTOR,)))
    assert outsider.get(f"/retraining/{job.pk}/").status_code == 404
    assert outsider.post(f"/retraining/{job.pk}/act/", {"action": "retry"}).status_code == 404
