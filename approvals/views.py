"""The board's pages: review queue, review page (decide without leaving it), policies,
periodic reviews and notifications. Every write goes through approvals.services."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals import facts as facts_mod
from approvals import services
from approvals.forms import DecisionForm, PolicyForm, RequestForm, SignOffForm
from approvals.models import ApprovalPolicy, ApprovalRequest, Decision, Notification, PeriodicReview
from audits.services import history_for
from portal.jsonutil import script_json
from portal.permissions import Access
from registry.models import ModelVersion
from registry.services import InvalidTransition


def _access(request: HttpRequest) -> Access:
    return Access(user=request.user)


def _requests(request: HttpRequest) -> QuerySet[ApprovalRequest]:
    return _access(request).filter(
        ApprovalRequest.objects.select_related(
            "use_case", "model_version__model", "policy", "requested_by"
        )
    )


def _visible_request(request: HttpRequest, pk: int) -> ApprovalRequest:
    return get_object_or_404(_requests(request), pk=pk)


# ---------------------------------------------------------------- queue


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    user = request.user
    my_roles = services.user_roles(user)
    visible = _requests(request)
    decided = Decision.objects.filter(reviewer=user).values("request_id")
    tabs: dict[str, QuerySet[ApprovalRequest]] = {
        "mine": visible.filter(Q(requested_by=user) | Q(pk__in=decided)),
        "roles": visible.filter(state__in=ApprovalRequest.OPEN_STATES)
        .filter(Q(policy__quorum__has_any_keys=list(my_roles)) if my_roles else Q(pk__in=[]))
        .exclude(pk__in=decided),
        "all": visible,
    }
    tab = request.GET.get("tab") or (
        "roles" if my_roles & {"governance board", "risk officer"} else "mine"
    )
    if tab not in tabs:
        tab = "all"
    rows = tabs[tab]
    state = request.GET.get("state", "")
    if state:
        rows = rows.filter(state=state)
    env = request.GET.get("environment", "")
    if env:
        rows = rows.filter(environment=env)
    tier = request.GET.get("risk_tier", "")
    if tier:
        rows = rows.filter(use_case__risk_tier=tier)
    counts = {name: qs.count() for name, qs in tabs.items()}
    state_counts = dict(
        visible.values_list("state").annotate(n=Count("pk")).values_list("state", "n")
    )
    reviews = _access(request).filter(
        PeriodicReview.objects.filter(state=PeriodicReview.State.OPEN).select_related("use_case")
    )
    return render(
        request,
        "approvals/queue.html",
        {
            "tab": tab,
            "tabs": [("roles", "For my roles"), ("mine", "Mine"), ("all", "All")],
            "counts": counts,
            "rows": rows.order_by("-created_at")[:200],
            "states": ApprovalRequest.State.choices,
            "state_counts": state_counts,
            "filters": {"state": state, "environment": env, "risk_tier": tier},
            "reviews": reviews,
            "today": timezone.localdate(),
        },
    )


# ---------------------------------------------------------------- review page


def _comparison_chart(mv: ModelVersion, deployed: ModelVersion | None) -> str | None:
    metrics = sorted(set(mv.metrics or {}) | set((deployed.metrics if deployed else {}) or {}))
    if not metrics:
        return None
    data = [
        {
            "type": "bar",
            "name": f"candidate {mv.version}",
            "x": metrics,
            "y": [(mv.metrics or {}).get(m) for m in metrics],
            "marker": {"color": "#2f6fde"},
        }
    ]
    if deployed is not None:
        data.append(
            {
                "type": "bar",
                "name": f"deployed {deployed.version}",
                "x": metrics,
                "y": [(deployed.metrics or {}).get(m) for m in metrics],
                "marker": {"color": "#9aa5b1"},
            }
        )
    layout = {
        "barmode": "group",
        "height": 260,
        "margin": {"l": 40, "r": 10, "t": 10, "b": 40},
        "yaxis": {"range": [0, 1]},
        "legend": {"orientation": "h", "y": 1.15},
        "font": {"family": "DejaVu Sans, sans-serif", "size": 12},
    }
    return script_json({"data": data, "layout": layout})


def _subgroup_rows(mv: ModelVersion, deployed: ModelVersion | None) -> dict[str, Any]:
    mine = mv.subgroup_metrics or {}
    theirs = (deployed.subgroup_metrics or {}) if deployed else {}
    columns = sorted({m for values in mine.values() for m in values})
    rows = []
    for name in sorted(set(mine) | set(theirs)):
        cells = []
        for metric in columns:
            value = mine.get(name, {}).get(metric)
            before = theirs.get(name, {}).get(metric)
            low = value is not None and (
                (metric == "recall" and value < 0.8)
                or (before is not None and value < before - 0.02)
            )
            cells.append({"value": value, "before": before, "low": low})
        rows.append({"name": name, "cells": cells})
    return {"columns": columns, "rows": rows}


def review_context(request: HttpRequest, req: ApprovalRequest) -> dict[str, Any]:
    user = request.user
    mv = req.model_version
    deployed = facts_mod.deployed_version(mv, req.environment) if mv else None
    my_roles = sorted(services.user_roles(user) & set(req.policy.quorum))
    round_ = services.current_round(req)
    decisions = list(req.decisions.select_related("reviewer").order_by("created_at"))
    mine = next((d for d in decisions if d.reviewer_id == user.pk and d.round == round_), None)
    conflict = services.conflicted(req, user)
    can_decide = req.is_open and bool(my_roles) and mine is None and conflict is None
    ctx: dict[str, Any] = {
        "req": req,
        "uc": req.use_case,
        "mv": mv,
        "deployed": deployed,
        "checks": req.check_results,
        "failing": [c for c in req.check_results if not c["passed"]],
        "quorum": services.quorum_status(req, round_),
        "round": round_,
        "decisions": decisions,
        "my_roles": my_roles,
        "my_decision": mine,
        "conflict": conflict,
        "can_decide": can_decide,
        "can_contribute": _access(request).can_contribute(req.use_case),
        "blocking": services.blocking_reasons(req) if req.is_open else [],
        "form": DecisionForm(roles=my_roles) if can_decide else None,
        "history": list(history_for(req).order_by("-seq")[:30]),
        "incidents": facts_mod.open_incidents(req.use_case),
    }
    if mv is not None:
        ctx.update(
            {
                "card": [
                    (ModelVersion._meta.get_field(n).verbose_name, getattr(mv, n))
                    for n in ModelVersion.MODEL_CARD_FIELDS
                ],
                "metrics": [
                    (name, value, (deployed.metrics or {}).get(name) if deployed else None)
                    for name, value in sorted((mv.metrics or {}).items())
                ],
                "chart": _comparison_chart(mv, deployed),
                "subgroups": _subgroup_rows(mv, deployed),
                "artifacts": facts_mod.artifact_signatures(mv),
                "evidence": [
                    {"item": e, "signature": sig}
                    for e, sig in (
                        (e, facts_mod.signature_status(e.attestations.all()))
                        for e in mv.evidence.prefetch_related("attestations")
                    )
                ],
                "training": _access(request).filter(mv.training_datasets.select_related("dataset")),
            }
        )
    return ctx


@login_required
def review(request: HttpRequest, pk: int) -> HttpResponse:
    req = _visible_request(request, pk)
    return render(request, "approvals/review.html", review_context(request, req))


@login_required
@require_POST
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    req = _visible_request(request, pk)
    ctx = review_context(request, req)
    form = DecisionForm(request.POST, roles=ctx["my_roles"])
    error = None
    if form.is_valid():
        try:
            services.decide(
                _access(request),
                req,
                verdict=form.cleaned_data["verdict"],
                comment=form.cleaned_data["comment"],
                role=form.cleaned_data.get("role") or None,
            )
        except ValidationError as exc:
            for field, errs in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errs)
        except (PermissionDenied, InvalidTransition) as exc:
            error = str(exc)
        else:
            req.refresh_from_db()
            if not request.headers.get("HX-Request"):
                messages.success(request, "Decision recorded.")
                return redirect(req)
            return render(request, "approvals/_decision_panel.html", review_context(request, req))
    ctx.update({"form": form, "error": error})
    status = 200 if request.headers.get("HX-Request") else 400
    template = (
        "approvals/_decision_panel.html"
        if request.headers.get("HX-Request")
        else ("approvals/review.html")
    )
    return render(request, template, ctx, status=status)


@login_required
@require_POST
def withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    req = _visible_request(request, pk)
    try:
        services.withdraw_request(_access(request), req, reason=request.POST.get("reason", ""))
    except InvalidTransition as exc:
        messages.error(request, str(exc))
    return redirect(req)


@login_required
@require_POST
def resubmit(request: HttpRequest, pk: int) -> HttpResponse:
    req = _visible_request(request, pk)
    try:
        services.submit_request(_access(request), req)
    except InvalidTransition as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Resubmitted: the reviewers decide again.")
    return redirect(req)


@login_required
def attestation(request: HttpRequest, pk: int) -> HttpResponse:
    req = _visible_request(request, pk)
    if not req.attestation:
        return JsonResponse({"detail": "this request has no signed approval"}, status=404)
    response = JsonResponse(req.attestation, json_dumps_params={"indent": 1})
    response["Content-Disposition"] = f'attachment; filename="approval-{req.pk}.dsse.json"'
    return response


@login_required
def request_create(request: HttpRequest, version_pk: int) -> HttpResponse:
    access = _access(request)
    mv = get_object_or_404(
        access.filter(ModelVersion.objects.select_related("model", "use_case")), pk=version_pk
    )
    access.require_contribute(mv.use_case)
    form = RequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            req = services.create_request(
                access,
                model_version=mv,
                environment=form.cleaned_data["environment"],
                summary=form.cleaned_data["summary"],
            )
        except ValidationError as exc:
            for field, errs in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errs)
        else:
            messages.success(request, "Approval requested; the reviewers have been notified.")
            return redirect(req)
    return render(
        request,
        "registry/form.html",
        {"title": f"Request approval of {mv}", "back": mv, "form": form},
    )


# ---------------------------------------------------------------- policies


@login_required
def policy_list(request: HttpRequest) -> HttpResponse:
    policies = ApprovalPolicy.objects.filter(active=True).order_by("environment", "risk_tier")
    return render(
        request,
        "approvals/policies.html",
        {"policies": policies, "can_edit": services.can_edit_policies(_access(request))},
    )


@login_required
def policy_detail(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(ApprovalPolicy, pk=pk)
    access = _access(request)
    can_edit = services.can_edit_policies(access) and policy.active
    form = None
    if can_edit:
        form = PolicyForm(request.POST or None, initial=PolicyForm.initial_for(policy))
        if request.method == "POST" and form.is_valid():
            try:
                new = services.update_policy(access, policy, **form.cleaned_data)
            except ValidationError as exc:
                for field, errs in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errs)
            else:
                messages.success(request, f"Saved as version {new.version}.")
                return redirect(new)
    elif request.method == "POST":
        raise PermissionDenied("only risk officers and admins edit approval policies")
    versions = ApprovalPolicy.objects.filter(
        risk_tier=policy.risk_tier, environment=policy.environment
    ).order_by("-version")
    return render(
        request,
        "approvals/policy.html",
        {"policy": policy, "form": form, "versions": versions, "can_edit": can_edit},
    )


# ---------------------------------------------------------------- reviews, notifications


@login_required
def review_sign_off(request: HttpRequest, pk: int) -> HttpResponse:
    review_obj = get_object_or_404(
        _access(request).filter(PeriodicReview.objects.select_related("use_case")), pk=pk
    )
    form = SignOffForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.sign_off_review(_access(request), review_obj, notes=form.cleaned_data["notes"])
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, f"Review of {review_obj.use_case} signed off.")
            return redirect(review_obj.use_case)
    return render(
        request,
        "registry/form.html",
        {
            "title": f"Sign off the periodic review of {review_obj.use_case} "
            f"(due {review_obj.due_date:%Y-%m-%d})",
            "back": review_obj.use_case,
            "form": form,
        },
    )


@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    rows = Notification.objects.filter(user=request.user)
    if request.method == "POST":
        rows.filter(read_at__isnull=True).update(read_at=timezone.now())
        return redirect("approvals:notifications")
    return render(request, "approvals/notifications.html", {"rows": rows[:100]})


def unread_count(user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
