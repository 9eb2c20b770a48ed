"""The Slurm executor: a batch script per job, ``sbatch --parsable``, ``scontrol``/``squeue``
(``sacct`` where accounting exists), ``scancel``, and the job's output file for logs.

The job directory (``root``) must be on storage the submitting host and the compute nodes
share (as on any Slurm cluster); the batch script, the token file (mode 0600, removed by the
job when it starts) and the output live there. The script records the command's exit code in
the directory too, so the outcome survives Slurm forgetting the job (``MinJobAge``) on
clusters without accounting.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
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
from workers.executors.local import SAFE, expand, placeholders

STATES = {
    "PENDING": State.QUEUED,
    "CONFIGURING": State.QUEUED,
    "REQUEUED": State.QUEUED,
    "REQUEUE_HOLD": State.QUEUED,
    "REQUEUE_FED": State.QUEUED,
    "RESV_DEL_HOLD": State.QUEUED,
    "RUNNING": State.RUNNING,
    "COMPLETING": State.RUNNING,
    "STAGE_OUT": State.RUNNING,
    "SIGNALING": State.RUNNING,
    "RESIZING": State.RUNNING,
    "SUSPENDED": State.RUNNING,
    "STOPPED": State.RUNNING,
    "COMPLETED": State.SUCCEEDED,
    "CANCELLED": State.CANCELLED,
    "FAILED": State.FAILED,
    "TIMEOUT": State.FAILED,
    "NODE_FAIL": State.FAILED,
    "OUT_OF_MEMORY": State.FAILED,
    "BOOT_FAIL": State.FAILED,
    "DEADLINE": State.FAILED,
    "PREEMPTED": State.FAILED,
    "REVOKED": State.FAILED,
    "SPECIAL_EXIT": State.FAILED,
}
MESSAGES = {
    "TIMEOUT": "time limit exceeded",
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "node failure",
    "PREEMPTED": "preempted",
    "DEADLINE": "deadline reached",
    "BOOT_FAIL": "node boot failure",
}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOT_FOUND = re.compile(r"invalid job id|not found|unknown job", re.IGNORECASE)


def _minutes(seconds: int) -> str:
    """Slurm's ``--time`` in whole minutes (its resolution), at least one."""
    minutes = max(1, -(-int(seconds) // 60))
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def _exit_code(value: str) -> int | None:
    """Slurm's ``ExitCode=code:signal`` as one number (negative for a signal)."""
    code, _, sig = value.partition(":")
    try:
        code_i, sig_i = int(code), int(sig or 0)
    except ValueError:
        return None
    return -sig_i if sig_i and not code_i else code_i


class SlurmExecutor(Executor):
    """Options: ``partition``, ``account``, ``qos``, ``gpu_flag`` (``gres``:
    ``--gres=gpu[:type]:N``, or ``gpus``: ``--gpus=[type:]N``), ``extra_args`` (more sbatch
    arguments), ``root`` (the shared job directory), ``python`` (what ``{python}`` stands
    for), ``bin_dir`` (where sbatch and friends are), ``path`` (the job's PATH),
    ``command_timeout_s``."""

    kind = "Slurm"

    def __init__(
        self,
        name: str,
        *,
        partition: str = "",
        account: str = "",
        qos: str = "",
        gpu_flag: str = "gres",
        extra_args: list[str] | None = None,
        root: str | None = None,
        python: str | None = None,
        charter_root: str | None = None,
        bin_dir: str = "",
        path: str = PATH,
        command_timeout_s: float = 30.0,
    ) -> None:
        if gpu_flag not in ("gres", "gpus"):
            raise ValueError("gpu_flag must be 'gres' or 'gpus'")
        if extra_args is not None and not all(isinstance(a, str) for a in extra_args):
            raise ValueError("extra_args must be a list of strings")
        super().__init__(name, partition=partition, account=account, qos=qos, gpu_flag=gpu_flag)
        self.partition, self.account, self.qos = partition, account, qos
        self.gpu_flag = gpu_flag
        self.extra_args = list(extra_args or [])
        self.root = Path(root) if root else Path(settings.VAR_DIR) / "slurm-jobs"
        self.values = placeholders({"python": python, "charter_root": charter_root})
        self.bin_dir = bin_dir
        self.path = path
        self.command_timeout_s = command_timeout_s

    # -- plumbing

    def _bin(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self._bin(argv[0]), *argv[1:]],
                capture_output=True,
                text=True,
                timeout=self.command_timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ExecutorError(f"{argv[0]} is not installed here") from exc
        except subprocess.TimeoutExpired as exc:
            raise ExecutorError(f"{argv[0]} did not answer in {self.command_timeout_s} s") from exc

    def check(self) -> list[str]:
        missing = [
            c for c in ("sbatch", "scontrol", "squeue", "scancel") if not shutil.which(self._bin(c))
        ]
        return [f"{', '.join(missing)} not found on PATH"] if missing else []

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "partition": self.partition,
            "account": self.account,
            "root": str(self.root),
        }

    def workdir(self, key: str) -> Path:
        return self.root / SAFE.sub("_", key)

    # -- the batch script

    def sbatch_args(self, job: ExecutorJob) -> list[str]:
        """The ``sbatch`` options for a job (also written as ``#SBATCH`` lines)."""
        workdir = self.workdir(job.key)
        r = job.resources
        args = [
            f"--job-name={SAFE.sub('_', job.key)}",
            f"--output={workdir / 'output.log'}",
            f"--chdir={workdir}",
            "--ntasks=1",
            f"--cpus-per-task={max(1, r.cpus)}",
            f"--mem={max(1, r.memory_mb)}M",
            f"--time={_minutes(job.time_limit_s)}",
            "--no-requeue",
            "--export=NONE",
        ]
        if r.gpus:
            if self.gpu_flag == "gpus":
                args.append(f"--gpus={r.gpu_type + ':' if r.gpu_type else ''}{r.gpus}")
            else:
                args.append(f"--gres=gpu:{r.gpu_type + ':' if r.gpu_type else ''}{r.gpus}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.account:
            args.append(f"--account={self.account}")
        if self.qos:
            args.append(f"--qos={self.qos}")
        return [*args, *self.extra_args]

    def script(self, job: ExecutorJob) -> str:
        workdir = self.workdir(job.key)
        lines = ["#!/bin/bash", *(f"#SBATCH {a}" for a in self.sbatch_args(job)), ""]
        lines.append(f"export PATH={shlex.quote(self.path)}")
        lines.append("export HOME=${HOME:-/tmp}")
        for key, value in sorted(job.env.items()):
            lines.append(f"export {key}={shlex.quote(value)}")
        secrets = workdir / "secrets.env"
        lines += [
            f"if [ -f {shlex.quote(str(secrets))} ]; then",
            f"  set -a; . {shlex.quote(str(secrets))}; set +a",
            f"  rm -f {shlex.quote(str(secrets))}",
            "fi",
            'echo "[charter] slurm job $SLURM_JOB_ID on $(hostname)'
            ' gpus=${CUDA_VISIBLE_DEVICES:-none}"',
            shlex.join(expand(job.command, self.values)),
            "code=$?",
            f"echo $code > {shlex.quote(str(workdir / 'exit_code'))}",
            "exit $code",
            "",
        ]
        return "\n".join(lines)

    # -- the interface

    def _find(self, key: str) -> str | None:
        """A job already submitted under this key (a redelivered submit task)."""
        result = self._run("squeue", "-h", "--name", SAFE.sub("_", key), "-o", "%i")
        ids = result.stdout.split() if result.returncode == 0 else []
        if ids:
            return ids[0]
        recorded = self.workdir(key) / "job_id"
        return recorded.read_text().strip() if recorded.exists() else None

    def submit(self, job: ExecutorJob) -> str:
        workdir = self.workdir(job.key)
        workdir.mkdir(parents=True, exist_ok=True)
        existing = self._find(job.key)
        if existing:
            return existing
        if job.secrets:
            fd = os.open(workdir / "secrets.env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.writelines(f"{k}={shlex.quote(v)}\n" for k, v in job.secrets.items())
        script = workdir / "job.sh"
        script.write_text(self.script(job))
        script.chmod(0o700)
        result = self._run("sbatch", "--parsable", str(script))
        if result.returncode != 0:
            raise ExecutorError(f"sbatch refused the job: {result.stderr.strip()}")
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise ExecutorError(f"sbatch answered {result.stdout.strip()!r}, not a job id")
        (workdir / "job_id").write_text(job_id)
        (workdir / "key").write_text(job.key)
        return job_id

    def _workdir_of(self, job_id: str) -> Path | None:
        for candidate in self.root.glob("*/job_id"):
            if candidate.read_text().strip() == job_id:
                return candidate.parent
        return None

    def _scontrol(self, job_id: str) -> dict[str, str] | None:
        result = self._run("scontrol", "show", "job", "-o", job_id)
        if result.returncode != 0:
            if NOT_FOUND.search(result.stderr):
                return None
            raise ExecutorError(f"scontrol failed: {result.stderr.strip()}")
        fields: dict[str, str] = {}
        for token in shlex.split(result.stdout.strip()):
            key, sep, value = token.partition("=")
            if sep and key not in fields:
                fields[key] = value
        return fields

    def _sacct(self, job_id: str) -> tuple[str, str] | None:
        if not shutil.which(self._bin("sacct")):
            return None
        result = self._run("sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode")
        if result.returncode != 0 or not result.stdout.strip():
            return None
        state, _, code = result.stdout.strip().splitlines()[0].partition("|")
        return state.split()[0], code

    def status(self, external_id: str) -> JobStatus:
        fields = self._scontrol(external_id)
        if fields is not None:
            raw, code = fields.get("JobState", ""), fields.get("ExitCode", "")
            reason = fields.get("Reason", "")
        else:
            acct = self._sacct(external_id)
            if acct is None:
                return self._from_files(external_id)
            raw, code = acct
            reason = ""
        state = STATES.get(raw)
        if state is None:
            return JobStatus(State.RUNNING, message=f"Slurm state {raw}")
        exit_code = _exit_code(code) if state.final else None
        message = MESSAGES.get(raw, "")
        if state == State.FAILED and not message:
            message = f"exit code {exit_code}" if exit_code is not None else raw.lower()
        if state == State.QUEUED and reason and reason != "None":
            message = f"pending: {reason}"
        return JobStatus(state, exit_code=exit_code, message=message)

    def _from_files(self, job_id: str) -> JobStatus:
        """Slurm forgot the job (past MinJobAge, no accounting): what the script recorded."""
        workdir = self._workdir_of(job_id)
        code_file = workdir / "exit_code" if workdir else None
        if code_file is None or not code_file.exists():
            raise JobNotFound(f"Slurm does not know job {job_id}")
        code = int(code_file.read_text().strip() or 1)
        if code == 0:
            return JobStatus(State.SUCCEEDED, exit_code=0, progress=1.0)
        return JobStatus(State.FAILED, exit_code=code, message=f"exit code {code}")

    def cancel(self, external_id: str) -> None:
        result = self._run("scancel", external_id)
        if result.returncode != 0 and not NOT_FOUND.search(result.stderr):
            raise ExecutorError(f"scancel failed: {result.stderr.strip()}")

    def logs(self, external_id: str, tail: int = 200) -> str:
        fields = self._scontrol(external_id)
        path = Path(fields["StdOut"]) if fields and fields.get("StdOut") else None
        if path is None:
            workdir = self._workdir_of(external_id)
            if workdir is None:
                raise JobNotFound(f"Slurm does not know job {external_id}")
            path = workdir / "output.log"
        return read_tail(path, tail)
