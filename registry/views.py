"""Registry pages. Lists and details filter by what the user may see (404 otherwise);
forms validate, and the service functions do the writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, QuerySet
from django.db.models import Model as DjangoModel
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from audits.models import AuditEvent
from audits.services import history_for, record_access
from portal.jsonutil import script_json
from portal.permissions import Access
from registry import filters, forms, services
from registry.models import (
    Dataset,
    DatasetVersion,
    Deployment,
    Model,
    ModelVersion,
    UseCase,
)
from registry.services import InvalidTransition

PAGE_SIZE = 25
SORTS = {
    "name": "name",
    "-name": "-name",
    "risk": "risk_tier",
    "status": "status",
    "review": "next_review_date",
    "-updated": "-updated_at",
}


def _access(request: HttpRequest) -> Access:
    return Access(user=request.user)


def _page(request: HttpRequest, queryset: QuerySet, size: int = PAGE_SIZE) -> Any:
    return Paginator(queryset, size).get_page(request.GET.get("page"))


def _visible(request: HttpRequest, queryset: QuerySet, pk: int) -> Any:
    return get_object_or_404(_access(request).filter(queryset), pk=pk)


def _query_without_page(request: HttpRequest) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def _service_form(
    request: HttpRequest,
    form: Any,
    save: Callable[[dict[str, Any]], DjangoModel],
    template: str,
    context: dict[str, Any],
) -> HttpResponse:
    """Run ``save`` (a service call) on valid POSTs; put its errors back on the form."""
    if request.method == "POST" and form.is_valid():
        try:
            obj = save(form.cleaned_data)
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc.messages)
        else:
            messages.success(request, f"Saved {obj._meta.verbose_name} “{obj}”.")
            return redirect(obj)
    return render(request, template, {**context, "form": form})


def _history(obj: DjangoModel) -> list[AuditEvent]:
    return list(history_for(obj).order_by("-seq")[:50])


# ------------------------------------------------------------------ use cases


@login_required
def usecase_list(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    queryset = access.filter(UseCase.objects.select_related("business_owner")).annotate(
        model_count=Count("models", distinct=True)
    )
    flt = filters.UseCaseFilter(request.GET, queryset=queryset)
    sort = request.GET.get("sort", "name")
    rows = flt.qs.order_by(SORTS.get(sort, "name"), "pk")
    return render(
        request,
        "registry/usecase_list.html",
        {
            "filter": flt,
            "page": _page(request, rows),
            "sort": sort,
            "query": _query_without_page(request),
            "can_create": access.can_create_use_case(),
        },
    )


VERSIONS_SHOWN = 8  # per model, on a use case's page


@login_required
def usecase_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    uc = _visible(request, UseCase.objects.select_related("business_owner", "technical_owner"), pk)
    # the latest few versions of each model (a model retrained daily has hundreds; its own
    # page lists them all), read with only the columns the table shows
    models = uc.models.annotate(n_versions=Count("versions")).prefetch_related(
        Prefetch(
            "versions",
            queryset=ModelVersion.objects.only("model_id", "version", "status").order_by(
                "-created_at", "-pk"
            )[:VERSIONS_SHOWN],
            to_attr="latest_versions",
        )
    )
    return render(
        request,
        "registry/usecase_detail.html",
        {
            "uc": uc,
            "datasets": uc.datasets.prefetch_related("versions"),
            "models": models,
            "deployments": Deployment.objects.filter(use_case=uc).select_related(
                "model_version__model", "released_by"
            )[:20],
            "evidence": uc.evidence.select_related("model_version__model")[:20],
            "transitions": sorted(UseCase.TRANSITIONS[uc.status]),
            "can_change": access.can_change_use_case(uc),
            "can_contribute": access.can_contribute(uc),
            "history": _history(uc),
        },
    )


@login_required
def usecase_create(request: HttpRequest) -> HttpResponse:
    access = _access(request)
    if not access.can_create_use_case():
        raise PermissionDenied
    form = forms.UseCaseForm(request.POST or None)
    return _service_form(
        request,
        form,
        lambda data: services.create_use_case(access, **data),
        "registry/form.html",
        {"title": "Propose a use case"},
    )


@login_required
def usecase_edit(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    uc = _visible(request, UseCase.objects.all(), pk)
    if not access.can_change_use_case(uc):
        raise PermissionDenied
    form = forms.UseCaseForm(request.POST or None, instance=UseCase.objects.get(pk=pk))
    return _service_form(
        request,
        form,
        lambda data: services.update_use_case(
            access, uc, **{k: v for k, v in data.items() if k in form.changed_data}
        ),
        "registry/form.html",
        {"title": f"Edit {uc}", "back": uc},
    )


def _transition(request: HttpRequest, obj: Any, service: Callable[..., Any]) -> HttpResponse:
    form = forms.TransitionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a status.")
        return redirect(obj)
    try:
        service(
            _access(request),
            obj,
            form.cleaned_data["status"],
            reason=form.cleaned_data["reason"],
        )
    except InvalidTransition as exc:
        messages.error(request, str(exc))
        return redirect(obj)
    messages.success(request, f"Status is now {form.cleaned_data['status']}.")
    return redirect(obj)


@login_required
@require_POST
def usecase_transition(request: HttpRequest, pk: int) -> HttpResponse:
    uc = _visible(request, UseCase.objects.all(), pk)
    return _transition(request, uc, services.transition_use_case)


# ------------------------------------------------------------------ datasets


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    rows = (
        _access(request)
        .filter(DatasetVersion.objects.select_related("dataset", "use_case"))
        .order_by("dataset__name", "-created_at", "pk")
    )
    flt = filters.DatasetVersionFilter(request.GET, queryset=rows)
    return render(
        request,
        "registry/dataset_list.html",
        {"page": _page(request, flt.qs), "query": _query_without_page(request)},
    )


@login_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ds = _visible(request, Dataset.objects.select_related("use_case", "owner"), pk)
    return render(
        request,
        "registry/dataset_detail.html",
        {
            "ds": ds,
            "versions": ds.versions.order_by("-created_at"),
            "can_contribute": _access(request).can_contribute(ds.use_case),
            "history": _history(ds),
        },
    )


@login_required
def dataset_create(request: HttpRequest, use_case_pk: int) -> HttpResponse:
    access = _access(request)
    uc = _visible(request, UseCase.objects.all(), use_case_pk)
    access.require_contribute(uc)
    form = forms.DatasetForm(request.POST or None)
    return _service_form(
        request,
        form,
        lambda data: services.create_dataset(access, use_case=uc, **data),
        "registry/form.html",
        {"title": f"New dataset for {uc}", "back": uc},
    )


@login_required
def datasetversion_create(request: HttpRequest, dataset_pk: int) -> HttpResponse:
    access = _access(request)
    ds = _visible(request, Dataset.objects.select_related("use_case"), dataset_pk)
    access.require_contribute(ds.use_case)
    form = forms.DatasetVersionForm(
        request.POST or None, request.FILES or None, access=access, dataset=ds
    )

    def save(data: dict[str, Any]) -> DatasetVersion:
        data = {k: v for k, v in data.items() if v not in (None, "") or k == "derived_from"}
        return services.create_dataset_version(access, dataset=ds, **data)

    return _service_form(
        request,
        form,
        save,
        "registry/form.html",
        {"title": f"New version of {ds}", "back": ds, "multipart": True},
    )


@login_required
def datasetversion_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dv = _visible(
        request,
        DatasetVersion.objects.select_related("dataset", "use_case", "created_by"),
        pk,
    )
    if dv.is_sensitive:
        record_access(AuditEvent.Action.VIEW, actor=request.user, obj=dv)
    access = _access(request)
    sections = [
        (DatasetVersion._meta.get_field(name).verbose_name, getattr(dv, name))
        for name in DatasetVersion.DATASHEET_FIELDS
    ]
    return render(
        request,
        "registry/datasetversion_detail.html",
        {
            "dv": dv,
            "sections": sections,
            "derived_from": access.filter(dv.derived_from.select_related("dataset")),
            "derivatives": access.filter(dv.derivatives.select_related("dataset")),
            "trained": access.filter(dv.trained_model_versions.select_related("model")),
            "quality": (dv.quality_summary or {}).get("columns", {}),
            "history": _history(dv),
        },
    )


# ------------------------------------------------------------------ models


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    rows = (
        _access(request)
        .filter(ModelVersion.objects.select_related("model", "use_case"))
        .order_by("-created_at", "pk")
    )
    flt = filters.ModelVersionFilter(request.GET, queryset=rows)
    return render(
        request,
        "registry/model_list.html",
        {
            "filter": flt,
            "page": _page(request, flt.qs),
            "query": _query_without_page(request),
        },
    )


@login_required
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    model = _visible(request, Model.objects.select_related("use_case", "owner"), pk)
    return render(
        request,
        "registry/model_detail.html",
        {
            "model": model,
            "page": Paginator(
                model.versions.select_related("registered_by", "parent").order_by(
                    "-created_at", "-pk"
                ),
                50,
            ).get_page(request.GET.get("page")),
            "can_contribute": _access(request).can_contribute(model.use_case),
            "history": _history(model),
        },
    )


@login_required
def model_create(request: HttpRequest, use_case_pk: int) -> HttpResponse:
    access = _access(request)
    uc = _visible(request, UseCase.objects.all(), use_case_pk)
    access.require_contribute(uc)
    form = forms.ModelForm(request.POST or None)
    return _service_form(
        request,
        form,
        lambda data: services.create_model(access, use_case=uc, **data),
        "registry/form.html",
        {"title": f"New model for {uc}", "back": uc},
    )


@login_required
def modelversion_create(request: HttpRequest, model_pk: int) -> HttpResponse:
    access = _access(request)
    model = _visible(request, Model.objects.select_related("use_case"), model_pk)
    access.require_contribute(model.use_case)
    form = forms.ModelVersionForm(request.POST or None, access=access, model=model)
    return _service_form(
        request,
        form,
        lambda data: services.register_model_version(access, model=model, **data),
        "registry/form.html",
        {"title": f"Register a version of {model}", "back": model},
    )


@login_required
def modelversion_edit(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    mv = _visible(request, ModelVersion.objects.select_related("model"), pk)
    access.require_contribute(mv.use_case)
    form = forms.ModelVersionForm(
        request.POST or None,
        instance=ModelVersion.objects.get(pk=pk),
        access=access,
        model=mv.model,
    )
    return _service_form(
        request,
        form,
        lambda data: services.update_model_version(
            access, mv, **{k: v for k, v in data.items() if k in form.changed_data}
        ),
        "registry/form.html",
        {"title": f"Edit the model card of {mv}", "back": mv},
    )


def _metric_table(mv: ModelVersion) -> dict[str, Any]:
    """Subgroups × metrics, with the values a reviewer should look at flagged."""
    subgroups = mv.subgroup_metrics or {}
    columns = sorted({m for values in subgroups.values() for m in values})
    rows = []
    for name, values in sorted(subgroups.items()):
        cells = []
        for metric in columns:
            value = values.get(metric)
            overall = (mv.metrics or {}).get(metric)
            low = value is not None and (
                (metric in {"recall", "tpr", "sensitivity"} and value < 0.8)
                or (overall is not None and value < overall - 0.05)
            )
            cells.append({"value": value, "low": low})
        rows.append({"name": name, "cells": cells})
    return {"columns": columns, "rows": rows}


def _subgroup_chart(mv: ModelVersion, table: dict[str, Any]) -> str:
    data = [
        {
            "type": "bar",
            "name": metric,
            "x": [row["name"] for row in table["rows"]],
            "y": [row["cells"][i]["value"] for row in table["rows"]],
        }
        for i, metric in enumerate(table["columns"])
    ]
    layout = {
        "barmode": "group",
        "height": 300,
        "margin": {"l": 40, "r": 10, "t": 10, "b": 60},
        "yaxis": {"range": [0, 1]},
        "legend": {"orientation": "h", "y": 1.12},
        "font": {"family": "DejaVu Sans, sans-serif", "size": 12},
    }
    return script_json({"data": data, "layout": layout})


@login_required
def modelversion_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    mv = _visible(
        request,
        ModelVersion.objects.select_related("model", "use_case", "registered_by", "parent"),
        pk,
    )
    table = _metric_table(mv)
    return render(
        request,
        "registry/modelversion_detail.html",
        {
            "mv": mv,
            "uc": mv.use_case,
            "card": [
                (ModelVersion._meta.get_field(n).verbose_name, getattr(mv, n))
                for n in ModelVersion.MODEL_CARD_FIELDS
            ],
            "metrics": sorted((mv.metrics or {}).items()),
            "table": table,
            "chart": _subgroup_chart(mv, table) if table["rows"] else None,
            "datasets": [
                (label, access.filter(getattr(mv, name).select_related("dataset")))
                for label, name in (
                    ("Training", "training_datasets"),
                    ("Validation", "validation_datasets"),
                    ("Test", "test_datasets"),
                )
            ],
            "children": mv.children.select_related("model"),
            "artifacts": mv.artifacts.prefetch_related("attestations__signer_key__owner"),
            "evidence": mv.evidence.prefetch_related("attestations__signer_key__owner"),
            "deployments": mv.deployments.select_related("released_by"),
            "transitions": sorted(ModelVersion.TRANSITIONS[mv.status]),
            "can_contribute": access.can_contribute(mv.use_case),
            "history": _history(mv),
        },
    )


@login_required
@require_POST
def modelversion_transition(request: HttpRequest, pk: int) -> HttpResponse:
    mv = _visible(request, ModelVersion.objects.select_related("model"), pk)
    return _transition(request, mv, services.transition_model_version)


@login_required
def evidence_create(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    mv = _visible(request, ModelVersion.objects.select_related("model"), pk)
    access.require_contribute(mv.use_case)
    form = forms.EvidenceForm(request.POST or None)

    def save(data: dict[str, Any]) -> ModelVersion:
        services.add_evidence(access, model_version=mv, **data)
        return mv

    return _service_form(
        request, form, save, "registry/form.html", {"title": f"Add evidence to {mv}", "back": mv}
    )


# ------------------------------------------------------------------ deployments


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    rows = (
        _access(request)
        .filter(
            Deployment.objects.select_related("model_version__model", "use_case", "released_by")
        )
        .order_by("-released_at", "pk")
    )
    flt = filters.DeploymentFilter(request.GET, queryset=rows)
    return render(
        request,
        "registry/deployment_list.html",
        {"filter": flt, "page": _page(request, flt.qs), "query": _query_without_page(request)},
    )


@login_required
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dep = _visible(
        request,
        Deployment.objects.select_related("model_version__model", "use_case", "released_by"),
        pk,
    )
    chain, cursor = [], dep.replaces
    while cursor is not None and len(chain) < 20:
        chain.append(cursor)
        cursor = cursor.replaces
    return render(
        request,
        "registry/deployment_detail.html",
        {
            "dep": dep,
            "chain": chain,
            "replaced_by": dep.replaced_by.select_related("model_version__model"),
            "history": _history(dep),
        },
    )


@login_required
def deployment_create(request: HttpRequest, pk: int) -> HttpResponse:
    access = _access(request)
    mv = _visible(request, ModelVersion.objects.select_related("model"), pk)
    access.require_contribute(mv.use_case)
    form = forms.DeploymentForm(request.POST or None, access=access, model_version=mv)
    return _service_form(
        request,
        form,
        lambda data: services.record_deployment(access, model_version=mv, **data),
        "registry/form.html",
        {"title": f"Record a deployment of {mv}", "back": mv},
    )
