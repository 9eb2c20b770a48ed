"""Faults: the Celery worker polling a job is SIGKILLed and restarted (the job's final state is
recorded once); an executor that loses a job (its record gone, or its supervisor dead) yields
``lost`` and an incident."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from audits.models import AuditEvent
from portal.models import ApiToken
from tests.retraining import rig
from tests.worker import celery_worker, wait_for
from workers import retraining
from workers.executors.local import LocalExecutor
from workers.models import Incident, RetrainingJob


def _transitions(job: RetrainingJob) -> list[str]:
    return [
        e.changes["after"]["state"]
        for e in AuditEvent.objects.filter(
            object_type="workers.retrainingjob", object_id=str(job.pk), action="transition"
        ).order_by("seq")
    ]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_killed_while_polling_then_restarted_records_the_end_once(
    live_server: Any, tmp_path: Path
) -> None:
    w = rig.world(risk_tier="limited")
    rig.template(w, parameters={"label": "label", "subgroup": "region", "sleep_s": 4})
    env = {
        "CHARTER_JOB_PORTAL_URL": live_server.url,
        "CHARTER_RETRAINING_POLL_BASE_S": "0.5",
        "CHARTER_RETRAINING_POLL_MAX_S": "1",
        "CELERY_VISIBILITY_TIMEOUT": "2",
    }
    slow = {
        **env,
        "CHARTER_TEST_POLL_DELAY_S": "1.5",
        "CHARTER_TEST_POLL_MARKER_DIR": str(tmp_path),
    }
    with celery_worker(extra_env=slow) as proc:
        job = retraining.request_job(rig.SYSTEM, model=w.model, trigger="schedule")
        assert wait_for(
            lambda: (
                RetrainingJob.objects.get(pk=job.pk).state == "running"
                and any(tmp_path.glob(f"polling-{job.pk}-*"))
            ),
            timeout=60,
        ), RetrainingJob.objects.get(pk=job.pk).state
        time.sleep(0.3)  # inside a poll (each sleeps 1.5 s before it looks)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    job.refresh_from_db()
    workdir = Path(django_settings.VAR_DIR) / "jobs" / job.key
    # the job itself outlives the worker and finishes while no worker is alive
    assert wait_for(lambda: (workdir / "exit_code").exists(), timeout=90), job.key
    assert (workdir / "exit_code").read_text().strip() == "0"
    job.refresh_from_db()
    assert job.state == "running" and job.produced_version is not None  # result posted, end not
    with celery_worker(extra_env=env, purge=False):
        done = wait_for(lambda: RetrainingJob.objects.get(pk=job.pk).is_final, timeout=90)
    job.refresh_from_db()
    assert done, "no worker recorded the end; see var/test/worker-test.log"
    assert job.state == "succeeded", job.message
    states = _transitions(job)
    assert states.count("succeeded") == 1  # recorded once, whoever polled
    assert len(states) == len(set(states)), states
    assert states == ["queued", "running", "succeeded"]


def _running_local_job(w: rig.World, django_capture_on_commit_callbacks: Any) -> RetrainingJob:
    with django_capture_on_commit_callbacks(execute=True):
        job = retraining.request_job(
            rig.SYSTEM,
            model=w.model,
            trigger="person",
            spec={"entrypoint": ["sh", "-c", "echo training; sleep 60"], "time_limit_s": 120},
        )
    job.refresh_from_db()
    assert job.state == "queued", job.message
    deadline = time.monotonic() + 20
    while retraining.poll(job.pk) != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    job.refresh_from_db()
    assert job.state == "running"
    return job


def _kill(workdir: Path) -> None:
    for name, group in (("pid", True), ("runner.pid", False)):
        pid = int((workdir / name).read_text())
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if group else os.kill)(pid, signal.SIGKILL)


@pytest.mark.django_db
def test_a_job_whose_record_is_gone_is_lost_with_an_incident(
    django_capture_on_commit_callbacks: Any,
) -> None:
    w = rig.world(risk_tier="limited", upload=False)
    job = _running_local_job(w, django_capture_on_commit_callbacks)
    workdir = LocalExecutor("local").workdir(job.external_id)
    _kill(workdir)
    shutil.rmtree(workdir)  # e.g. the job directory was cleaned up under the job
    assert retraining.poll(job.pk) == "lost"
    job.refresh_from_db()
    assert job.finished_at and "no local job" in job.message
    incident = Incident.objects.get(details__retraining_job=job.pk)
    assert incident.use_case == w.uc and incident.severity == "medium"
    assert f"Retraining job #{job.pk} lost" in incident.title
    assert AuditEvent.objects.filter(object_type="workers.incident", object_id=incident.pk).exists()
    assert _transitions(job) == ["queued", "running", "lost"]
    assert not ApiToken.objects.filter(user=job.account, revoked_at__isnull=True).exists()
    assert retraining.poll(job.pk) == "lost"  # nothing more happens
    assert Incident.objects.filter(details__retraining_job=job.pk).count() == 1


@pytest.mark.django_db
def test_a_job_whose_supervisor_died_is_lost(django_capture_on_commit_callbacks: Any) -> None:
    w = rig.world(risk_tier="limited", upload=False)
    job = _running_local_job(w, django_capture_on_commit_callbacks)
    _kill(LocalExecutor("local").workdir(job.external_id))
    deadline = time.monotonic() + 10
    while retraining.poll(job.pk) != "lost" and time.monotonic() < deadline:
        time.sleep(0.2)
    job.refresh_from_db()
    assert job.state == "lost" and "supervisor" in job.message
    assert Incident.objects.filter(details__retraining_job=job.pk).count() == 1
