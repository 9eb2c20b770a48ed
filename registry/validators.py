"""Validators for the registry's structured JSON fields."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import ValidationError


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_metrics(value: Any) -> None:
    """``{"auc": 0.91, "recall": 0.8}``: names to finite numbers."""
    if not isinstance(value, dict):
        raise ValidationError("must be an object mapping metric names to numbers")
    for name, number in value.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ValidationError(f"metric name {name!r} must be a non-empty string (≤100 chars)")
        if not _finite_number(number):
            raise ValidationError(f"metric '{name}' must be a finite number, got {number!r}")


def validate_subgroup_metrics(value: Any) -> None:
    """``{"age<30": {"recall": 0.82}, ...}``: subgroups to metric objects."""
    if not isinstance(value, dict):
        raise ValidationError("must be an object mapping subgroup names to metric objects")
    for subgroup, metrics in value.items():
        if not isinstance(subgroup, str) or not subgroup.strip() or len(subgroup) > 200:
            raise ValidationError(f"subgroup name {subgroup!r} must be a non-empty string")
        try:
            validate_metrics(metrics)
        except ValidationError as exc:
            raise ValidationError(f"subgroup '{subgroup}': {exc.messages[0]}") from exc


def validate_json_object(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object")


def validate_schema(value: Any) -> None:
    """``[{"name": "age", "type": "integer"}, ...]``."""
    if not isinstance(value, list):
        raise ValidationError("must be a list of {name, type} objects")
    seen: set[str] = set()
    for i, column in enumerate(value):
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            raise ValidationError(f"column {i} must be an object with a string 'name'")
        if column["name"] in seen:
            raise ValidationError(f"column '{column['name']}' appears twice")
        seen.add(column["name"])
        if "type" in column and not isinstance(column["type"], str):
            raise ValidationError(f"column '{column['name']}': 'type' must be a string")
