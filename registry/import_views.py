"""The MLflow import page (administrators): a form, then the job's report."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from portal.permissions import Access
from registry import mlflow_import
from registry.models import MlflowImportJob, UseCase


class MlflowImportForm(forms.Form):
    tracking_uri = forms.CharField(
        max_length=1000,
        label="MLflow tracking URI",
        help_text="e.g. http://mlflow.internal:5000 or postgresql://mlflow@db/mlflow "
        "(no password: the workers hold credentials)",
    )
    use_case = forms.ModelChoiceField(
        queryset=UseCase.objects.all(),
        required=False,
        label="Use case",
        empty_label="From each registered model's charter.use_case tag",
    )
    dry_run = forms.BooleanField(required=False, initial=True, label="Dry run (save nothing)")
    download_artifacts = forms.BooleanField(
        required=False,
        label="Download artifacts to compute digests",
        help_text="for artifact stores the workers cannot read in place",
    )


def _admin(request: HttpRequest) -> Access:
    access = Access(user=request.user)
    if not access.can_administer():
        raise PermissionDenied
    return access


@login_required
def mlflow_import_page(request: HttpRequest) -> HttpResponse:
    access = _admin(request)
    form = MlflowImportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = mlflow_import.request_import(access, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            return redirect("mlflow-import-job", pk=job.pk)
    jobs = MlflowImportJob.objects.select_related("requested_by", "use_case")[:20]
    return render(request, "registry/mlflow_import.html", {"form": form, "jobs": jobs})


@login_required
def mlflow_import_job(request: HttpRequest, pk: int) -> HttpResponse:
    _admin(request)
    job = get_object_or_404(MlflowImportJob.objects.select_related("use_case"), pk=pk)
    template = (
        "registry/_mlflow_job.html"
        if request.headers.get("HX-Request")
        else "registry/mlflow_import_job.html"
    )
    return render(request, template, {"job": job, "report": job.report})
