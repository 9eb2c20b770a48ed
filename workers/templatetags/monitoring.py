"""Monitoring cards other pages include: open incidents (dashboard), a deployment's health."""

from __future__ import annotations

from typing import Any

from django import template

from portal.permissions import Access
from workers.models import DriftResult, Incident, Severity

register = template.Library()


@register.inclusion_tag("workers/_incidents_card.html", takes_context=True)
def incidents_card(context: dict[str, Any]) -> dict[str, Any]:
    """Open incidents the user may see, most severe first."""
    access = Access(user=context["request"].user)
    rows = access.filter(
        Incident.objects.filter(closed_at__isnull=True).select_related(
            "deployment__model_version__model", "use_case"
        )
    )
    rank = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}
    items = sorted(rows[:200], key=lambda i: (rank.get(i.severity, 3), -i.opened_at.timestamp()))
    return {"incidents": items[:6], "total": len(items)}


@register.inclusion_tag("workers/_deployment_card.html")
def deployment_monitoring(dep: Any) -> dict[str, Any]:
    """Latest drift result and open incidents of one deployment (the page already checked
    that the user may see it)."""
    return {
        "dep": dep,
        "latest": DriftResult.objects.filter(deployment=dep).order_by("-window_start").first(),
        "incidents": list(
            Incident.objects.filter(deployment=dep, closed_at__isnull=True).order_by("-opened_at")
        ),
    }


@register.filter
def iso_time(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An ISO 8601 string (as stored in JSON details) shown in UTC."""
    from datetime import UTC, datetime

    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime(fmt)
    except ValueError:
        return str(value)


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    if value is None or value == "":  # "": a missing variable (e.g. no result yet)
        return "—"
    return f"{float(value) * 100:.{digits}f}%"


@register.filter
def num(value: Any, digits: int = 3) -> str:
    """About ``digits`` significant figures; scientific notation for tiny or huge values."""
    if value is None or value == "":
        return "—"
    value = float(value)
    if value == 0:
        return "0"
    size = abs(value)
    if size < 10 ** (-digits) or size >= 1e7:
        return f"{value:.{digits - 1}e}"
    if size < 1:
        return f"{value:.{digits}g}"
    whole = len(str(int(size)))
    return f"{value:,.{max(digits - whole, 0)}f}"


METHODS = {
    "wasserstein": "Wasserstein",
    "jensenshannon": "Jensen–Shannon",
    "ks": "KS",
    "psi": "PSI",
    "chisquare": "χ²",
    "z": "Z-test",
}


@register.filter
def method_name(value: Any) -> str:
    return METHODS.get(value, value or "—")
