"""The Ray executor: Ray job submission (``ray.job_submission.JobSubmissionClient``).

Ray is an optional extra (``pip install charter[ray]``): this module imports it only when an
executor is built, and the system check says so when it is missing. The job's entrypoint runs
on the cluster with ``entrypoint_num_cpus``/``entrypoint_num_gpus``/``entrypoint_memory``
reserved for it; Ray has no time limit of its own, so the entrypoint is wrapped in coreutils
``timeout``. ``address`` is the head's dashboard (``http://head:8265``).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from workers.executors.base import (
    Executor,
    ExecutorError,
    ExecutorJob,
    JobNotFound,
    JobStatus,
    State,
    tail_lines,
)
from workers.executors.local import expand, placeholders

STATES = {
    "PENDING": State.QUEUED,
    "RUNNING": State.RUNNING,
    "STOPPED": State.CANCELLED,
    "SUCCEEDED": State.SUCCEEDED,
    "FAILED": State.FAILED,
}
TIMEOUT_EXIT = 124  # coreutils timeout: the command ran out of time
SUBMISSION_ID = re.compile(r"[^A-Za-z0-9_-]")
NOT_FOUND = re.compile(r"404|does not exist|not found", re.IGNORECASE)


class RayExecutor(Executor):
    """Options: ``address`` (the dashboard URL), ``runtime_env`` (merged into each job's, e.g.
    ``{"working_dir": ...}``), ``python`` (what ``{python}`` stands for), ``metadata``,
    ``headers`` (e.g. an auth header for a proxied dashboard), ``kill_after_s``."""

    kind = "Ray"

    def __init__(
        self,
        name: str,
        *,
        address: str = "http://127.0.0.1:8265",
        runtime_env: dict[str, Any] | None = None,
        python: str | None = None,
        charter_root: str | None = None,
        metadata: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        kill_after_s: int = 10,
    ) -> None:
        if not isinstance(address, str) or "://" not in address:
            raise ValueError("address must be the Ray dashboard URL, e.g. http://head:8265")
        super().__init__(name, address=address)
        self.address = address
        self.runtime_env = dict(runtime_env or {})
        self.values = placeholders({"python": python, "charter_root": charter_root})
        self.metadata = dict(metadata or {})
        self.headers = dict(headers or {})
        self.kill_after_s = int(kill_after_s)
        self._client: Any = None

    def check(self) -> list[str]:
        try:
            import ray.job_submission  # noqa: F401
        except ImportError:
            return ["Ray is not installed (pip install 'charter[ray]')"]
        return []

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "address": self.address}

    def client(self) -> Any:
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError as exc:
                raise ExecutorError("Ray is not installed (pip install 'charter[ray]')") from exc
            try:
                self._client = JobSubmissionClient(self.address, headers=self.headers or None)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot reach Ray at {self.address}: {exc}") from exc
        return self._client

    def submission_id(self, key: str) -> str:
        return SUBMISSION_ID.sub("_", key)

    def entrypoint(self, job: ExecutorJob) -> str:
        command = shlex.join(expand(job.command, self.values))
        if job.time_limit_s:
            return f"timeout --kill-after={self.kill_after_s} {int(job.time_limit_s)} {command}"
        return command

    def submit(self, job: ExecutorJob) -> str:
        client = self.client()
        sid = self.submission_id(job.key)
        runtime_env = dict(self.runtime_env)
        runtime_env["env_vars"] = {
            **runtime_env.get("env_vars", {}),
            **job.env,
            **job.secrets,
        }
        r = job.resources
        kwargs: dict[str, Any] = {
            "entrypoint": self.entrypoint(job),
            "submission_id": sid,
            "runtime_env": runtime_env,
            "metadata": {**self.metadata, **job.labels, "charter_job": job.name},
            "entrypoint_num_cpus": max(0, r.cpus),
            "entrypoint_num_gpus": max(0, r.gpus),
        }
        if r.memory_mb:
            kwargs["entrypoint_memory"] = int(r.memory_mb) * 1024 * 1024
        if r.gpus and r.gpu_type:
            kwargs["entrypoint_resources"] = {f"accelerator_type:{r.gpu_type}": 0.001}
        try:
            return str(client.submit_job(**kwargs))
        except RuntimeError as exc:
            if "already exists" in str(exc):
                return sid  # a redelivered submit: the job is there already
            raise ExecutorError(f"Ray refused the job: {exc}") from exc
        except ConnectionError as exc:
            raise ExecutorError(f"cannot reach Ray at {self.address}: {exc}") from exc

    def _call(self, method: str, external_id: str) -> Any:
        try:
            return getattr(self.client(), method)(external_id)
        except RuntimeError as exc:
            if NOT_FOUND.search(str(exc)):
                raise JobNotFound(f"Ray does not know job {external_id}") from exc
            raise ExecutorError(f"Ray: {exc}") from exc
        except ConnectionError as exc:
            raise ExecutorError(f"cannot reach Ray at {self.address}: {exc}") from exc

    def status(self, external_id: str) -> JobStatus:
        info = self._call("get_job_info", external_id)
        raw = str(getattr(info.status, "value", info.status))
        state = STATES.get(raw, State.RUNNING)
        code = info.driver_exit_code
        message = info.message or ""
        if state == State.FAILED:
            if code == TIMEOUT_EXIT:
                message = "time limit exceeded"
            elif code is not None:
                message = f"exit code {code}"
        return JobStatus(
            state,
            exit_code=code if state.final else None,
            message=message[:500],
            progress=1.0 if state == State.SUCCEEDED else None,
        )

    def cancel(self, external_id: str) -> None:
        self._call("stop_job", external_id)

    def logs(self, external_id: str, tail: int = 200) -> str:
        return tail_lines(self._call("get_job_logs", external_id) or "", tail)
