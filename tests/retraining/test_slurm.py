"""The Slurm executor against a real single-node Slurm (slurmctld, slurmd and munge on this
host, installed from Debian's packages and started by scripts/slurm-up.sh), whose node
declares one GPU: the GPU job sees CUDA_VISIBLE_DEVICES; success, failure, cancel and the
time limit each end in the right state with logs; and a retraining job runs examples/retrain/
through Slurm end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.retraining import rig
from tests.retraining.conftest import executors_setting
from workers import executors, retraining
from workers.executors import ExecutorJob, Resources, State
from workers.executors.slurm import SlurmExecutor


def _job(key: str, command: list[str], **kw: Any) -> ExecutorJob:
    return ExecutorJob(
        key=key,
        name=key,
        command=command,
        env={"GREETING": "hello from Charter"},
        secrets={"CHARTER_TOKEN": "chtr_test_secret value"},
        resources=kw.pop("resources", Resources(cpus=1, memory_mb=64)),
        **kw,
    )


def _wait(ex: SlurmExecutor, ids: list[str], timeout: float = 150) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        states = {i: ex.status(i) for i in ids}
        if all(s.state.final for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def test_batch_script_carries_the_resources(tmp_path: Path) -> None:
    ex = SlurmExecutor("slurm", root=str(tmp_path), partition="gpu", account="ml", qos="high")
    job = _job(
        "charter-rt-script",
        ["{python}", "train.py"],
        resources=Resources(cpus=4, memory_mb=8192, gpus=2, gpu_type="a100"),
        time_limit_s=5400,
    )
    script = ex.script(job)
    for line in (
        "#SBATCH --gres=gpu:a100:2",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8192M",
        "#SBATCH --time=1:30:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=ml",
        "#SBATCH --qos=high",
        "#SBATCH --export=NONE",
    ):
        assert line in script, line
    assert "chtr_test_secret" not in script  # the token goes through a 0600 file, not the script
    gpus = SlurmExecutor("s", root=str(tmp_path), gpu_flag="gpus").sbatch_args(job)
    assert "--gpus=a100:2" in gpus
    with pytest.raises(ValueError):
        SlurmExecutor("s", gpu_flag="nvidia")


def test_gpu_success_failure_cancel_and_timeout(slurm_cluster: str, tmp_path: Path) -> None:
    ex = SlurmExecutor("slurm", root=str(tmp_path))
    assert ex.check() == []
    stamp = str(int(time.time() * 1000))
    # the timeout job first: Slurm enforces limits in whole minutes, checked every ~30 s
    timeout = ex.submit(
        _job(f"timeout-{stamp}", ["sh", "-c", "echo started; sleep 600"], time_limit_s=1)
    )
    gpu = ex.submit(
        _job(
            f"gpu-{stamp}",
            ["sh", "-c", 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES $GREETING"'],
            resources=Resources(cpus=1, memory_mb=64, gpus=1),
        )
    )
    ok = ex.submit(
        _job(f"ok-{stamp}", ["{python}", "-c", "import os; print(os.environ['CHARTER_TOKEN'])"])
    )
    again = ex.submit(_job(f"ok-{stamp}", ["true"]))
    assert again == ok  # a redelivered submit finds the job submitted under its key
    failing = ex.submit(_job(f"fail-{stamp}", ["sh", "-c", "echo about to fail; exit 3"]))
    cancel = ex.submit(_job(f"cancel-{stamp}", ["sh", "-c", "echo started; sleep 600"]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ex.status(cancel).state == State.RUNNING and "started" in ex.logs(cancel):
            break
        time.sleep(0.5)
    ex.cancel(cancel)
    states = _wait(ex, [gpu, ok, failing, cancel, timeout])

    assert states[gpu].state == State.SUCCEEDED and states[gpu].exit_code == 0
    assert "CUDA_VISIBLE_DEVICES=0 hello from Charter" in ex.logs(gpu)
    assert states[ok].state == State.SUCCEEDED
    assert "chtr_test_secret value" in ex.logs(ok)  # the secret reached the job...
    assert not (tmp_path / f"ok-{stamp}" / "secrets.env").exists()  # ...and left the disk
    assert states[failing].state == State.FAILED and states[failing].exit_code == 3
    assert states[failing].message == "exit code 3" and "about to fail" in ex.logs(failing)
    assert states[cancel].state == State.CANCELLED and "started" in ex.logs(cancel)
    assert states[timeout].state == State.FAILED
    assert states[timeout].message == "time limit exceeded"
    assert "started" in ex.logs(timeout) and "TIME LIMIT" in ex.logs(timeout)
    with pytest.raises(executors.JobNotFound):
        ex.status("999999")


@pytest.mark.django_db(transaction=True)
def test_a_retraining_job_runs_on_slurm_end_to_end(
    slurm_cluster: str, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    settings.CHARTER_EXECUTORS = executors_setting(
        slurm={
            "class": "workers.executors.slurm.SlurmExecutor",
            "options": {"root": str(tmp_path / "slurm")},
        }
    )
    settings.CHARTER_JOB_PORTAL_URL = live_server.url
    w = rig.world(risk_tier="limited")
    rig.template(w, resources={"cpus": 1, "memory_mb": 512, "gpus": 1})
    job = retraining.request_job(
        rig.SYSTEM, model=w.model, trigger="schedule", executor="slurm", reason="nightly"
    )
    job.refresh_from_db()  # submitted on commit (tasks run in-process here)
    assert job.state == "queued" and job.external_id.isdigit()
    deadline = time.monotonic() + 120
    while not job.is_final and time.monotonic() < deadline:
        retraining.poll(job.pk)
        job.refresh_from_db()
        time.sleep(0.5)
    assert job.state == "succeeded", f"{job.message}\n{job.log_tail}"
    assert "CUDA_VISIBLE_DEVICES=0" in job.log_tail
    assert job.produced_version.parent == w.base
    assert job.release_approval.state == "submitted"
