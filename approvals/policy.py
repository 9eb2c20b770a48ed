"""Policy checks in CEL (Common Expression Language, via common-expression-language).

Why CEL: a real, specified, side-effect-free expression language (no loops, no
I/O, always terminates), readable by risk officers (``metrics.auc >= 0.8``),
with macros over lists (``subgroups.all(s, s.metrics.recall >= 0.8)``). The
package binds the Rust ``cel-interpreter`` (cel-python, a pure-Python
interpreter, took ~12 ms for one macro over 50 subgroups; this takes ~0.06 ms).
Each expression is compiled once (cached) and run over a dictionary of *facts*
gathered from the registry for the request:

``model_card``      {"complete": bool, "missing": [field, ...], <card fields>}
``metrics``         the version's metrics {"auc": 0.91, ...}
``subgroups``       [{"name": "age<30", "metrics": {...}}, ...]
``subgroup_min``    per metric, the lowest value over subgroups {"recall": 0.78}
``deployed``        the version active in the target environment:
                    {"present": bool, "version", "metrics", "subgroup_min"}
``evidence_types``  kinds of evidence on the version ["bias_evaluation", ...]
``evidence``        [{"kind", "title", "signature"}] (verified/failed/unsigned)
``artifact``        {"present", "sha256", "signature_verified", "signer"}
``drift_baseline``  bool: a training dataset version carries a reference profile
``incidents``       open incidents of the use case [{"severity", "title"}]
``use_case``        {"risk_tier", "status", "personal_data", "decision_impact"}
``environment``     the target environment

A check passes only when its expression yields ``true``; ``false``, any other
value or an evaluation error (e.g. a missing metric) fails it, with the reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cel
from django.core.exceptions import ValidationError

FACT_NAMES = (
    "model_card",
    "metrics",
    "subgroups",
    "subgroup_min",
    "deployed",
    "evidence_types",
    "evidence",
    "artifact",
    "drift_baseline",
    "incidents",
    "use_case",
    "environment",
)


@functools.lru_cache(maxsize=1024)
def compile_expression(expression: str) -> Any:
    """The compiled program; ValueError naming the position of a syntax error."""
    try:
        return cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        message = str(exc).replace("\n", " ")
        raise ValueError(f"not valid CEL: {message[:300]}") from exc


def validate_checks(checks: Any) -> list[dict[str, str]]:
    """Clean a policy's check list or raise ValidationError naming the bad entry."""
    if not isinstance(checks, list):
        raise ValidationError({"checks": ["must be a list of {name, expression} objects"]})
    cleaned: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, check in enumerate(checks):
        if not isinstance(check, dict):
            raise ValidationError({"checks": [f"check {i} must be an object"]})
        name = str(check.get("name", "")).strip()
        expression = str(check.get("expression", "")).strip()
        if not name or not expression:
            raise ValidationError({"checks": [f"check {i} needs a name and an expression"]})
        if name in seen:
            raise ValidationError({"checks": [f"check name '{name}' is used twice"]})
        seen.add(name)
        try:
            compile_expression(expression)
        except ValueError as exc:
            raise ValidationError({"checks": [f"check '{name}': {exc}"]}) from exc
        cleaned.append(
            {
                "name": name,
                "expression": expression,
                "description": str(check.get("description", "")),
            }
        )
    return cleaned


@dataclass(frozen=True)
class CheckResult:
    name: str
    expression: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "passed": self.passed,
            "detail": self.detail,
        }


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:200]


def evaluate(checks: list[dict[str, str]], facts: dict[str, Any]) -> list[CheckResult]:
    """Run every check over the facts (one evaluation context for all of them)."""
    context = cel.Context({name: facts.get(name) for name in FACT_NAMES})
    results = []
    for check in checks:
        program = compile_expression(check["expression"])
        try:
            value = program.execute(context)
        except Exception as exc:  # noqa: BLE001  (any evaluation error fails the check)
            detail = f"error: {type(exc).__name__}: {exc}"[:300]
            results.append(CheckResult(check["name"], check["expression"], False, detail))
            continue
        passed = value is True
        results.append(CheckResult(check["name"], check["expression"], passed, _show(value)))
    return results
