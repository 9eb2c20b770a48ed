"""The executor interface: how Charter hands a retraining job to some compute and follows it.

An executor turns an :class:`ExecutorJob` (plain data, no Django) into something running on a
local process, a Slurm cluster, Kubernetes or Ray, and answers four questions about it by the
``external_id`` it returned: :meth:`Executor.status`, :meth:`Executor.cancel`,
:meth:`Executor.logs`. Every backend maps its own states onto one vocabulary (:class:`State`).

A third party adds a backend by subclassing :class:`Executor` and naming it in
``CHARTER_EXECUTORS`` (``{"name": {"class": "dotted.path", "options": {...}}}``); nothing in
Charter changes. ``submit`` must be idempotent on ``job.key`` (a task redelivered after a crash
submits again with the same key and must get the same job back, not a second one).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


class State(enum.StrEnum):
    """The one state vocabulary every executor maps onto."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.LOST})


@dataclass(frozen=True)
class JobStatus:
    """What an executor knows about a job now."""

    state: State
    progress: float | None = None  # 0..1 when the backend knows it
    exit_code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Resources:
    cpus: int = 1
    memory_mb: int = 1024
    gpus: int = 0
    gpu_type: str = ""


@dataclass(frozen=True)
class ExecutorJob:
    """Everything a backend needs to start one job.

    ``command`` is the argv (entrypoint + arguments); ``image`` the container image where the
    backend runs containers (Kubernetes). ``env`` is the job's environment without secrets;
    ``secrets`` holds what must not be written where others read (the job's token): a backend
    passes it the safest way it has (a Kubernetes Secret, a 0600 file, the process
    environment). ``key`` names the submission (idempotency), ``time_limit_s`` is enforced by
    the backend.
    """

    key: str
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    time_limit_s: int = 3600
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)


class ExecutorError(Exception):
    """The backend refused or failed an operation (submission refused, API unreachable)."""


class JobNotFound(ExecutorError):
    """The backend does not know this external id (any more): the job is lost."""


class Executor(ABC):
    """Base class of executors. ``options`` come from ``CHARTER_EXECUTORS[name]["options"]``."""

    #: shown on pages and in the system check
    kind = "executor"

    def __init__(self, name: str, **options: Any) -> None:
        self.name = name
        self.options = options

    @abstractmethod
    def submit(self, job: ExecutorJob) -> str:
        """Start the job (idempotent on ``job.key``); return its external id."""

    @abstractmethod
    def status(self, external_id: str) -> JobStatus:
        """Its state now; :class:`JobNotFound` when the backend does not know it."""

    @abstractmethod
    def cancel(self, external_id: str) -> None:
        """Stop it (no error when it has already ended)."""

    @abstractmethod
    def logs(self, external_id: str, tail: int = 200) -> str:
        """The last ``tail`` lines of its output."""

    def check(self) -> list[str]:
        """Configuration problems found without submitting anything (the system check shows
        them at startup); an empty list when the executor looks usable."""
        return []

    def describe(self) -> dict[str, Any]:
        """What pages show about the executor (no secrets)."""
        return {"name": self.name, "kind": self.kind}


def tail_lines(text: str, tail: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-tail:]) if tail > 0 else ""


def read_tail(path: Any, tail: int, max_bytes: int = 256 * 1024) -> str:
    """The last ``tail`` lines of a file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return tail_lines(data.decode("utf-8", errors="replace"), tail)
