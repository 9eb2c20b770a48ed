"""The system check: a broken ``CHARTER_EXECUTORS`` is reported at startup."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Warning, register

from workers import executors


@register("charter")
def check_executors(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    entries = executors.configured()
    if not isinstance(entries, dict) or not entries:
        return [
            Error(
                "CHARTER_EXECUTORS names no executor",
                hint='e.g. {"local": {"class": "workers.executors.local.LocalExecutor"}}',
                id="charter.E101",
            )
        ]
    default = executors.default_name()
    if default not in entries:
        problems.append(
            Error(
                f"CHARTER_DEFAULT_EXECUTOR '{default}' is not in CHARTER_EXECUTORS",
                hint=f"configured: {', '.join(sorted(entries))}",
                id="charter.E102",
            )
        )
    for name, entry in entries.items():
        try:
            executor = executors.load(name, entry)
        except executors.ConfigurationError as exc:
            problems.append(Error(str(exc), id="charter.E103"))
            continue
        try:
            issues = executor.check()
        except Exception as exc:  # noqa: BLE001 - a check must report, never crash startup
            issues = [f"its check failed: {exc}"]
        for issue in issues:
            problems.append(Warning(f"executor '{name}': {issue}", id="charter.W104"))
    return problems
