"""The local-process executor (the default): each job is a child process on this host.

A job gets a working directory ``<root>/<key>/`` holding its spec, its output (``output.log``)
and the facts of its life as files (``pid``, ``exit_code``, ``cancelled``, ``timed_out``),
written by a detached supervisor (``_local_runner``), so the job and its record outlive the
Celery worker that started it. Cancel and the time limit stop the job's whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from workers.executors.base import (
    Executor,
    ExecutorError,
    ExecutorJob,
    JobNotFound,
    JobStatus,
    State,
    read_tail,
)

SAFE = re.compile(r"[^A-Za-z0-9_.-]")
QUEUED_GRACE_S = 30.0
RUNNER = Path(__file__).with_name("_local_runner.py")


def expand(command: list[str], values: dict[str, str]) -> list[str]:
    """Replace ``{python}``-style placeholders in a command (unknown ones stay as they are)."""
    out = []
    for part in command:
        for name, value in values.items():
            part = part.replace("{" + name + "}", value)
        out.append(part)
    return out


def placeholders(options: dict[str, Any]) -> dict[str, str]:
    return {
        "python": str(options.get("python") or sys.executable),
        "charter_root": str(options.get("charter_root") or settings.BASE_DIR),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not reaped) is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _int_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class LocalExecutor(Executor):
    """Options: ``root`` (job directories; default ``$CHARTER_VAR_DIR/jobs``), ``python``
    (the interpreter for ``{python}`` in commands), ``grace_s`` (SIGTERM → SIGKILL)."""

    kind = "local process"

    def __init__(
        self,
        name: str,
        *,
        root: str | None = None,
        python: str | None = None,
        grace_s: float = 10.0,
        charter_root: str | None = None,
    ) -> None:
        super().__init__(name, root=root, python=python, grace_s=grace_s)
        self.root = Path(root) if root else Path(settings.VAR_DIR) / "jobs"
        self.values = placeholders({"python": python, "charter_root": charter_root})
        self.grace_s = float(grace_s)

    def check(self) -> list[str]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return [f"cannot create its job directory {self.root}: {exc}"]
        if not os.access(self.root, os.W_OK):
            return [f"its job directory {self.root} is not writable"]
        return []

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": str(self.root)}

    def workdir(self, external_id: str) -> Path:
        return self.root / SAFE.sub("_", external_id)

    def submit(self, job: ExecutorJob) -> str:
        external_id = SAFE.sub("_", job.key)
        workdir = self.workdir(external_id)
        if (workdir / "job.json").exists():
            return external_id  # submitted before (a redelivered task): the same job
        workdir.mkdir(parents=True, exist_ok=True)
        spec = {
            "name": job.name,
            "command": expand(job.command, self.values),
            "env": job.env,
            "time_limit_s": job.time_limit_s,
            "grace_s": self.grace_s,
            "resources": job.resources.__dict__,
        }
        if job.secrets:
            fd = os.open(workdir / "secrets.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(job.secrets, fh)
        (workdir / "job.json").write_text(json.dumps(spec, indent=2))
        with open(workdir / "runner.log", "ab") as log:
            launcher = subprocess.Popen(
                [self.values["python"], str(RUNNER), str(workdir)],
                cwd=settings.BASE_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            code = launcher.wait(timeout=30)
        if code != 0:
            raise ExecutorError(f"the local runner did not start (exit code {code})")
        return external_id

    def status(self, external_id: str) -> JobStatus:
        workdir = self.workdir(external_id)
        if not (workdir / "job.json").exists():
            raise JobNotFound(f"no local job {external_id} under {self.root}")
        code = _int_file(workdir / "exit_code")
        if code is not None:
            if (workdir / "cancelled").exists():
                return JobStatus(State.CANCELLED, exit_code=code, message="cancelled")
            if (workdir / "timed_out").exists():
                limit = (workdir / "timed_out").read_text().strip()
                return JobStatus(
                    State.FAILED, exit_code=code, message=f"time limit of {limit} s exceeded"
                )
            if code == 0:
                return JobStatus(State.SUCCEEDED, exit_code=0, progress=1.0)
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            return JobStatus(State.FAILED, exit_code=code, message=why)
        runner = _int_file(workdir / "runner.pid")
        if runner is not None and _alive(runner):
            if (workdir / "pid").exists():
                return JobStatus(State.RUNNING)
            return JobStatus(State.QUEUED)
        age = time.time() - (workdir / "job.json").stat().st_mtime
        if runner is None and age < QUEUED_GRACE_S:
            return JobStatus(State.QUEUED, message="starting")
        return JobStatus(State.LOST, message="its supervisor process is gone and left no exit code")

    def cancel(self, external_id: str) -> None:
        workdir = self.workdir(external_id)
        if not (workdir / "job.json").exists():
            raise JobNotFound(f"no local job {external_id} under {self.root}")
        if (workdir / "exit_code").exists():
            return
        (workdir / "cancelled").write_text(str(time.time()))
        runner = _int_file(workdir / "runner.pid")
        if runner is not None and _alive(runner):
            os.kill(runner, signal.SIGTERM)  # it stops the job's process group, then records
            return
        child = _int_file(workdir / "pid")
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)
        if not (workdir / "exit_code").exists():  # nobody left to record it
            (workdir / "exit_code").write_text(str(-signal.SIGKILL))

    def logs(self, external_id: str, tail: int = 200) -> str:
        workdir = self.workdir(external_id)
        if not workdir.exists():
            raise JobNotFound(f"no local job {external_id} under {self.root}")
        return read_tail(workdir / "output.log", tail)
