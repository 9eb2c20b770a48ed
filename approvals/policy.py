"""Policy checks in CEL (Common Expression Language, via cel-python).

Why CEL: a real, specified, side-effect-free expression language (no loops, no
I/O, always terminates), readable by risk officers (``metrics.auc >= 0.8``),
with macros over lists (``subgroups.all(s, s.metrics.recall >= 0.8)``). It is
compiled once per expression (cached) and run over a dictionary of *facts*
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

import celpy
from django.core.exceptions import ValidationError

# The interpreted runner: cel-python 0.5's compiled runner mis-evaluates some logical
# operators (e.g. ``!x || y`` raised "no such overload" where the interpreter is right).
_ENV = celpy.Environment()

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
        return _ENV.program(_ENV.compile(expression))
    except celpy.CELParseError as exc:
        raise ValueError(f"not valid CEL: {str(exc).splitlines()[0]}") from exc


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
    if isinstance(value, celpy.celtypes.BoolType):
        return "true" if value else "false"
    return str(value)[:200]


def evaluate(checks: list[dict[str, str]], facts: dict[str, Any]) -> list[CheckResult]:
    """Run every check over the facts (converted to CEL values once)."""
    activation = {name: celpy.json_to_cel(facts.get(name)) for name in FACT_NAMES}
    results = []
    for check in checks:
        program = compile_expression(check["expression"])
        try:
            value = program.evaluate(activation)
        except celpy.CELEvalError as exc:
            results.append(
                CheckResult(check["name"], check["expression"], False, f"error: {_eval_msg(exc)}")
            )
            continue
        passed = isinstance(value, celpy.celtypes.BoolType) and bool(value)
        results.append(CheckResult(check["name"], check["expression"], passed, _show(value)))
    return results


def _eval_msg(exc: BaseException) -> str:
    while exc.args and isinstance(exc.args[-1], tuple) and exc.args[-1]:
        inner = exc.args[-1][0]
        if isinstance(inner, BaseException):
            exc = inner
            continue
        break
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)
