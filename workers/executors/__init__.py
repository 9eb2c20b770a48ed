"""Retraining executors, configured by name in ``settings.CHARTER_EXECUTORS``::

    CHARTER_EXECUTORS = {
        "local": {"class": "workers.executors.local.LocalExecutor", "options": {}},
        "gpu-cluster": {
            "class": "workers.executors.slurm.SlurmExecutor",
            "options": {"partition": "gpu", "account": "ml"},
        },
    }

(from the ``CHARTER_EXECUTORS`` environment variable as JSON). ``CHARTER_DEFAULT_EXECUTOR``
names the one used when a job does not say. A broken entry is reported by the system check
``charter.E101``–``E105`` at startup (``manage.py check``), not at the first job.
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any

from django.conf import settings

from workers.executors.base import (
    FINAL,
    Executor,
    ExecutorError,
    ExecutorJob,
    JobNotFound,
    JobStatus,
    Resources,
    State,
)

__all__ = [
    "FINAL",
    "ConfigurationError",
    "Executor",
    "ExecutorError",
    "ExecutorJob",
    "JobNotFound",
    "JobStatus",
    "Resources",
    "State",
    "configured",
    "default_name",
    "get_executor",
    "load",
]


class ConfigurationError(ExecutorError):
    """An executor entry in settings cannot be used."""


def configured() -> dict[str, dict[str, Any]]:
    return dict(getattr(settings, "CHARTER_EXECUTORS", {}) or {})


def default_name() -> str:
    return str(getattr(settings, "CHARTER_DEFAULT_EXECUTOR", "local"))


def load(name: str, entry: Any) -> Executor:
    """Build the executor of one settings entry; ConfigurationError says what is wrong."""
    if not isinstance(entry, dict):
        raise ConfigurationError(f"executor '{name}': the entry must be an object")
    unknown = set(entry) - {"class", "options"}
    if unknown:
        raise ConfigurationError(
            f"executor '{name}': unknown keys {sorted(unknown)} (use 'class' and 'options')"
        )
    dotted = entry.get("class")
    if not isinstance(dotted, str) or "." not in dotted:
        raise ConfigurationError(f"executor '{name}': 'class' must be a dotted path")
    module_name, _, attr = dotted.rpartition(".")
    try:
        cls = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"executor '{name}': cannot import {dotted}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ConfigurationError(
            f"executor '{name}': {dotted} is not a workers.executors.Executor subclass"
        )
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ConfigurationError(f"executor '{name}': 'options' must be an object")
    try:
        return cls(name, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"executor '{name}': bad options: {exc}") from exc


@functools.cache
def _cached(name: str, fingerprint: str) -> Executor:
    return load(name, configured()[name])


def get_executor(name: str | None = None) -> Executor:
    """The configured executor called ``name`` (the default one when None)."""
    name = name or default_name()
    entries = configured()
    if name not in entries:
        raise ConfigurationError(
            f"no executor called '{name}' (configured: {', '.join(sorted(entries)) or 'none'})"
        )
    return _cached(name, repr(entries[name]))
