"""The Ray executor against a real local Ray head (``ray start --head`` on free ports, one GPU
declared): success with the GPU reserved for the entrypoint, failure with its exit code, stop,
the time limit; and a retraining job runs examples/retrain/ through Ray end to end."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.retraining import rig
from tests.retraining.conftest import executors_setting
from workers import executors, retraining
from workers.executors import ExecutorJob, Resources, State
from workers.executors.ray_jobs import RayExecutor

# All of this module in one group of pytest-django's ordering (transactional tests run last),
# so the module's one Ray head serves every test of it.
pytestmark = pytest.mark.django_db(transaction=True)


def _job(key: str, command: list[str], **kw: Any) -> ExecutorJob:
    return ExecutorJob(
        key=key,
        name=key,
        command=command,
        env={"GREETING": "hello from Charter"},
        secrets={"CHARTER_TOKEN": "chtr_test_secret"},
        resources=kw.pop("resources", Resources(cpus=1, memory_mb=0)),
        **kw,
    )


def _wait_final(ex: RayExecutor, ids: list[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        states = {i: ex.status(i) for i in ids}
        if all(s.state.final for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def test_success_failure_stop_and_time_limit(ray_head: str) -> None:
    ex = RayExecutor("ray", address=ray_head)
    assert ex.check() == []
    stamp = str(int(time.time() * 1000))
    ok = ex.submit(
        _job(
            f"ok-{stamp}",
            ["sh", "-c", 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES $GREETING"'],
            resources=Resources(cpus=1, memory_mb=64, gpus=1),
        )
    )
    assert ex.submit(_job(f"ok-{stamp}", ["true"])) == ok  # idempotent on the key
    failing = ex.submit(_job(f"fail-{stamp}", ["sh", "-c", "echo about to fail; exit 3"]))
    stop = ex.submit(_job(f"stop-{stamp}", ["sh", "-c", "echo started; sleep 600"]))
    slow = ex.submit(_job(f"slow-{stamp}", ["sh", "-c", "echo started; sleep 600"], time_limit_s=2))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ex.status(stop).state == State.RUNNING and "started" in ex.logs(stop):
            break
        time.sleep(0.5)
    ex.cancel(stop)
    states = _wait_final(ex, [ok, failing, stop, slow])

    assert states[ok].state == State.SUCCEEDED and states[ok].exit_code == 0
    assert "CUDA_VISIBLE_DEVICES=0 hello from Charter" in ex.logs(ok)
    assert states[failing].state == State.FAILED and states[failing].exit_code == 3
    assert states[failing].message == "exit code 3" and "about to fail" in ex.logs(failing)
    assert states[stop].state == State.CANCELLED and "started" in ex.logs(stop)
    assert states[slow].state == State.FAILED and states[slow].message == "time limit exceeded"
    with pytest.raises(executors.JobNotFound):
        ex.status("charter-no-such-job")


def test_unreachable_head_is_an_executor_error() -> None:
    ex = RayExecutor("ray", address="http://127.0.0.1:9")
    with pytest.raises(executors.ExecutorError):
        ex.status("anything")


def test_a_retraining_job_runs_on_ray_end_to_end(
    ray_head: str, live_server: Any, settings: Any
) -> None:
    settings.CHARTER_EXECUTORS = executors_setting(
        ray={"class": "workers.executors.ray_jobs.RayExecutor", "options": {"address": ray_head}}
    )
    settings.CHARTER_JOB_PORTAL_URL = live_server.url
    w = rig.world(risk_tier="minimal")
    rig.template(w, resources={"cpus": 1, "memory_mb": 256, "gpus": 1})
    job = retraining.request_job(rig.SYSTEM, model=w.model, trigger="person", executor="ray")
    job.refresh_from_db()
    assert job.state == "queued" and job.external_id == job.key
    deadline = time.monotonic() + 120
    while not job.is_final and time.monotonic() < deadline:
        retraining.poll(job.pk)
        job.refresh_from_db()
        time.sleep(0.5)
    assert job.state == "succeeded", f"{job.message}\n{job.log_tail}"
    assert "CUDA_VISIBLE_DEVICES=0" in job.log_tail
    assert job.produced_version.parent == w.base
