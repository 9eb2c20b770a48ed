from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key, 0) if isinstance(mapping, dict) else None


@register.filter
def split(text: str) -> list[str]:
    return text.split()


@register.filter
def failing_count(results: list[dict[str, Any]]) -> int:
    return sum(1 for r in results or [] if not r.get("passed"))


@register.filter
def sub(a: float, b: float) -> float:
    return a - b
