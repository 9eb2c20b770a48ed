"""The local-process executor on its own: a working directory per job, captured output, the
time limit and cancel stopping the job's whole process group, idempotent submission."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from workers.executors import ExecutorJob, JobNotFound, State
from workers.executors.local import LocalExecutor


def _wait(ex: LocalExecutor, ids: list[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        states = {i: ex.status(i) for i in ids}
        if all(s.state.final for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def _live_in_group(pgid: int) -> list[int]:
    """Processes of a process group that are alive (zombies waiting to be reaped are not)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _job(key: str, command: list[str], limit: int = 60) -> ExecutorJob:
    return ExecutorJob(
        key=key,
        name=key,
        command=command,
        env={"GREETING": "hello"},
        secrets={"CHARTER_TOKEN": "chtr_local_secret"},
        time_limit_s=limit,
    )


def test_success_failure_cancel_and_time_limit(tmp_path: Path) -> None:
    ex = LocalExecutor("local", root=str(tmp_path), grace_s=1)
    assert ex.check() == []
    ok = ex.submit(
        _job("ok", ["{python}", "-c", "import os; print(os.environ['GREETING'], os.getcwd())"])
    )
    assert ex.submit(_job("ok", ["false"])) == ok  # the same key: the same job
    failing = ex.submit(_job("fail", ["sh", "-c", "echo boom >&2; exit 3"]))
    # a child that ignores SIGTERM: only the group's SIGKILL after the grace period stops it
    cancel = ex.submit(_job("cancel", ["sh", "-c", "echo started; trap '' TERM; sleep 60"]))
    slow = ex.submit(_job("slow", ["sh", "-c", "echo started; sleep 60 & wait"], limit=1))
    deadline = time.monotonic() + 10
    while ex.status(cancel).state != State.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    ex.cancel(cancel)
    states = _wait(ex, [ok, failing, cancel, slow])

    assert states[ok].state == State.SUCCEEDED and states[ok].exit_code == 0
    assert ex.logs(ok) == f"hello {tmp_path / 'ok'}"
    assert not (tmp_path / "ok" / "secrets.json").exists()  # read by the runner, then removed
    assert states[failing].state == State.FAILED and states[failing].exit_code == 3
    assert states[failing].message == "exit code 3" and "boom" in ex.logs(failing)
    assert states[cancel].state == State.CANCELLED and "started" in ex.logs(cancel)
    assert states[slow].state == State.FAILED and states[slow].message.startswith("time limit")
    child = int((tmp_path / "slow" / "pid").read_text())
    deadline = time.monotonic() + 5
    while _live_in_group(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_in_group(child) == []  # the whole group is gone, the backgrounded sleep too
    with pytest.raises(JobNotFound):
        ex.status("nope")
