from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import cache_control

from audits.models import AuditEvent
from portal.jsonutil import script_json
from portal.permissions import Access
from registry.models import Deployment, ModelVersion, RiskTier, UseCase

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
TIER_COLOURS = {
    "unacceptable": "#7f1d1d",
    "high": "#b42318",
    "limited": "#b54708",
    "minimal": "#067647",
}


@cache_control(max_age=86400 * 30, public=True)
def plotly_js(request: HttpRequest) -> FileResponse:
    """plotly.js as shipped inside the plotly package (self-hosted, no CDN)."""
    return FileResponse(PLOTLY_JS.open("rb"), content_type="text/javascript")


def _heat_class(n: int, top: int) -> str:
    if n == 0:
        return "h0"
    return "h3" if n * 3 > top * 2 else "h2" if n * 3 > top else "h1"


AWAITING_SHOWN = 8  # model versions awaiting review, on the dashboard
HIGH_RISK_TIERS = (RiskTier.HIGH, RiskTier.UNACCEPTABLE)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    access = Access(user=request.user)
    use_cases = access.filter(UseCase.objects.all())
    counts = {
        (row["risk_tier"], row["status"]): row["n"]
        for row in use_cases.values("risk_tier", "status").annotate(n=Count("id"))
    }
    top = max(counts.values(), default=0)
    grid = [
        {
            "tier": tier,
            "label": label,
            "cells": [
                {
                    "status": status,
                    "n": counts.get((tier, status), 0),
                    "cls": _heat_class(counts.get((tier, status), 0), top),
                }
                for status, _ in UseCase.Status.choices
            ],
            "total": sum(counts.get((tier, s), 0) for s, _ in UseCase.Status.choices),
        }
        for tier, label in RiskTier.choices
    ]
    chart = {
        "data": [
            {
                "type": "bar",
                "x": [row["label"] for row in grid],
                "y": [row["total"] for row in grid],
                "marker": {"color": [TIER_COLOURS[row["tier"]] for row in grid]},
            }
        ],
        "layout": {
            "height": 240,
            "margin": {"l": 30, "r": 10, "t": 10, "b": 30},
            "font": {"family": "DejaVu Sans, sans-serif", "size": 12},
        },
    }
    today = timezone.localdate()
    reviews = use_cases.exclude(status=UseCase.Status.RETIRED).filter(
        next_review_date__isnull=False
    )
    recent_changes: list[AuditEvent] = []
    if access.sees_everything() and request.user.has_perm("audits.view_auditevent"):
        recent_changes = list(AuditEvent.objects.order_by("-seq")[:10])
    in_review = access.filter(ModelVersion.objects.filter(status=ModelVersion.Status.IN_REVIEW))
    awaiting = list(
        in_review.select_related("model", "use_case", "registered_by").order_by("-created_at")[
            :AWAITING_SHOWN
        ]
    )
    return render(
        request,
        "portal/dashboard.html",
        {
            "grid": grid,
            "statuses": UseCase.Status.choices,
            "chart": script_json(chart),
            "total": sum(counts.values()),
            "awaiting": awaiting,
            # counted only when the list is full (otherwise it is the count)
            "awaiting_count": (
                in_review.count() if len(awaiting) == AWAITING_SHOWN else len(awaiting)
            ),
            "deployments": access.filter(
                Deployment.objects.select_related("model_version__model", "use_case")
            ).order_by("-released_at")[:8],
            "overdue": reviews.filter(next_review_date__lt=today).order_by("next_review_date"),
            "upcoming": reviews.filter(next_review_date__gte=today).order_by("next_review_date")[
                :5
            ],
            # from the tier-by-status counts above, not two more queries
            "in_production": sum(
                n for (_, status), n in counts.items() if status == UseCase.Status.IN_PRODUCTION
            ),
            "high_risk": sum(n for (tier, _), n in counts.items() if tier in HIGH_RISK_TIERS),
            "recent_changes": recent_changes,
        },
    )
