"""Monitoring and incident pages. Everything is narrowed to what the user may see (404 else);
writes go through ``workers.services``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.permissions import Access
from registry.models import Deployment
from workers import charts, services
from workers.drift import DatasetProfile
from workers.models import AlertRule, DriftResult, Incident, ReferenceProfile, WindowProfile

MAX_DAYS = 90


def _access(request: HttpRequest) -> Access:
    return Access(user=request.user)


def _deployment(request: HttpRequest, pk: int) -> Deployment:
    return get_object_or_404(
        _access(request).filter(
            Deployment.objects.select_related("model_version__model", "use_case", "released_by")
        ),
        pk=pk,
    )


def _int(value: Any, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default


def _feature_rows(result: DriftResult | None) -> list[dict[str, Any]]:
    if result is None:
        return []
    quality = {q["feature"]: q for q in (result.quality or {}).get("features", [])}
    rows = []
    for fd in result.features:
        q = quality.get(fd["feature"], {})
        rows.append({**fd, "ratio": charts.drift_ratio(fd), "quality": q})
    rows.sort(key=lambda r: (not r.get("drifted"), -r["ratio"], r["feature"]))
    return rows


def _histogram(
    ref: ReferenceProfile | None, window: WindowProfile | None, feature: str
) -> dict[str, Any] | None:
    if ref is None or window is None or window.profile is None:
        return None
    reference = services.inputs_of(ref)
    if feature not in reference.features:
        return None
    current = DatasetProfile.from_dict(window.profile)
    figure, note = charts.feature_histogram(feature, reference[feature], current[feature])
    return {
        "feature": feature,
        "kind": reference[feature].kind,
        "chart": charts.to_json(figure),
        "note": note,
        "window": window,
    }


def _budgets(rules: list[AlertRule]) -> dict[str, Any]:
    out: dict[str, Any] = {"latency": None, "errors": None, "floors": {}}
    for rule in rules:
        if not rule.enabled or rule.threshold is None:
            continue
        if rule.kind == AlertRule.Kind.LATENCY_P95:
            out["latency"] = rule.threshold
        elif rule.kind == AlertRule.Kind.ERROR_RATE:
            out["errors"] = rule.threshold
        elif rule.kind == AlertRule.Kind.METRIC_FLOOR:
            out["floors"][rule.metric] = rule.threshold
    return out


@login_required
def monitoring(request: HttpRequest, pk: int) -> HttpResponse:
    dep = _deployment(request, pk)
    access = _access(request)
    # the profile document is parsed once per process (inputs_of), not per page
    ref = services.reference_for(dep, defer_profile=True, with_dataset=True)
    cfg = services.config_for(dep)
    days = _int(request.GET.get("days"), 7, 1, MAX_DAYS)
    since = timezone.now() - timedelta(days=days)
    windows = list(
        WindowProfile.objects.filter(deployment=dep, end__gte=since)
        .defer("profile", "performance")
        .order_by("start")[:2000]
    )
    results = list(
        DriftResult.objects.filter(deployment=dep, window_end__gte=since).order_by("window_start")[
            :2000
        ]
    )
    by_window = {r.window_id: r for r in results}
    selected_id = _int(request.GET.get("window"), 0, 0, 2**62)
    window = next((w for w in windows if w.pk == selected_id), None)
    if window is None and selected_id:
        window = WindowProfile.objects.filter(deployment=dep, pk=selected_id).first()
    if window is None and results:
        window = next((w for w in windows if w.pk == results[-1].window_id), None)
    if window is None and windows:
        window = windows[-1]
    result = by_window.get(window.pk) if window else None
    if window is not None and result is None:
        result = DriftResult.objects.filter(window=window).first()
    rows = _feature_rows(result)
    labelled = result if result and (result.performance or {}).get("labelled") else None
    if labelled is None:
        labelled = next((r for r in reversed(results) if r.performance.get("labelled")), None)
    feature = request.GET.get("feature") or (rows[0]["feature"] if rows else "")
    if window is not None:
        window = WindowProfile.objects.get(pk=window.pk)  # with its profile
    rules = list(AlertRule.objects.filter(deployment=dep).order_by("name"))
    budgets = _budgets(rules)
    names = ref.feature_names if ref else []
    figures = {
        "drift": charts.drift_over_time(results, names) if results and names else None,
        "predictions": charts.predictions_over_time(windows),
        "latency": charts.latency_over_time(results, budgets["latency"]),
        "errors": charts.errors_over_time(results, budgets["errors"]),
        "performance": charts.performance_over_time(results, budgets["floors"]),
    }
    return render(
        request,
        "workers/monitoring.html",
        {
            "dep": dep,
            "ref": ref,
            "cfg": cfg,
            "days": days,
            "windows": list(reversed(windows)),
            "evaluated": set(by_window),
            "window": window,
            "result": result,
            "labelled": labelled,
            "rows": rows,
            "feature": feature,
            "histogram": _histogram(ref, window, feature),
            "charts": {k: charts.to_json(v) for k, v in figures.items() if v},
            "rules": rules,
            "incidents": Incident.objects.filter(deployment=dep, closed_at__isnull=True),
            "can_contribute": access.can_contribute(dep.use_case),
            "drift_config": services.drift_config_of(cfg).to_dict(),
        },
    )


@login_required
def feature_histogram(request: HttpRequest, pk: int) -> HttpResponse:
    """The htmx partial: reference against current histogram of one feature in one window."""
    dep = _deployment(request, pk)
    window = get_object_or_404(
        WindowProfile, deployment=dep, pk=_int(request.GET.get("window"), 0, 0, 2**62)
    )
    ref = services.reference_for(dep, defer_profile=True)
    histogram = _histogram(ref, window, request.GET.get("feature", ""))
    if histogram is None:
        return HttpResponse("No such feature in this window.", status=404)
    return render(request, "workers/_histogram.html", {"histogram": histogram, "dep": dep})


@login_required
@require_POST
def evaluate_now(request: HttpRequest, pk: int) -> HttpResponse:
    dep = _deployment(request, pk)
    _access(request).require_contribute(dep.use_case)
    chosen = _int(request.POST.get("window"), 0, 0, 2**62)
    window = (
        WindowProfile.objects.filter(deployment=dep, pk=chosen).first()
        or WindowProfile.objects.filter(deployment=dep).order_by("-start").first()
    )
    if window is None:
        messages.error(request, "No telemetry has arrived for this deployment yet.")
        return redirect("deployment-monitoring", pk=dep.pk)
    services.evaluate_window(window.pk)
    messages.success(request, f"Evaluated the window starting {window.start:%Y-%m-%d %H:%M}.")
    return redirect(f"{reverse('deployment-monitoring', args=[dep.pk])}?window={window.pk}")


@login_required
def incident_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "open")
    rows = services.visible_incidents(_access(request)).select_related(
        "deployment__model_version__model"
    )
    if state == "open":
        rows = rows.filter(closed_at__isnull=True)
    elif state == "closed":
        rows = rows.filter(closed_at__isnull=False)
    page = Paginator(rows.order_by("-opened_at", "-pk"), 25).get_page(request.GET.get("page"))
    return render(request, "workers/incident_list.html", {"page": page, "state": state})


@login_required
def incident_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    incident = get_object_or_404(
        services.visible_incidents(access).select_related(
            "deployment__model_version__model", "rule", "opened_by", "closed_by"
        ),
        pk=pk,
    )
    return render(
        request,
        "workers/incident_detail.html",
        {
            "incident": incident,
            "events": incident.events.select_related("actor"),
            "jobs": incident.retraining_jobs.select_related("produced_version").order_by("pk"),
            "can_handle": services.can_handle(access, incident.use_case),
        },
    )


ACTIONS = {
    "acknowledge": (services.acknowledge_incident, "note", "Acknowledged."),
    "close": (services.close_incident, "resolution", "Closed."),
    "comment": (services.comment_incident, "text", "Comment added."),
    "retrain": (services.request_retraining, "reason", "Retraining requested."),
    "rollback": (services.flag_rollback_review, "reason", "Flagged for rollback review."),
}


@login_required
@require_POST
def incident_act(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    incident = get_object_or_404(services.visible_incidents(access), pk=pk)
    what = ACTIONS.get(request.POST.get("action", ""))
    if what is None:
        messages.error(request, "Unknown action.")
        return redirect(incident)
    run, field, done = what
    try:
        run(access, incident, **{field: request.POST.get("text", "")})
    except services.Conflict as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    else:
        messages.success(request, done)
    return redirect(incident)
