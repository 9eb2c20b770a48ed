"""Report pages: build a signed package in a worker (progress bar), download it, or read
the report as HTML/JSON/CSV at once. Every package build and download is audited."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db import models, transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from audits.models import AuditEvent, ReportJob
from audits.services import object_label, record, record_access
from lineage.reports.build import build_report
from lineage.reports.package import to_csv, to_html
from portal.permissions import Access
from portal.security import harden_download
from registry.models import Deployment, ModelVersion, UseCase

SUBJECTS: dict[str, type[models.Model]] = {
    "model-version": ModelVersion,
    "deployment": Deployment,
    "use-case": UseCase,
}


def subject_of(kind: str, pk: Any, access: Access) -> models.Model:
    """The subject if it exists and ``access`` may see it; Http404 otherwise."""
    model = SUBJECTS.get(kind)
    if model is None:
        raise Http404("no such report subject")
    field = "pk" if model is UseCase else "use_case_id"
    return get_object_or_404(access.filter(model.objects.all(), field), pk=pk)


@login_required
def report(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    access = Access(user=request.user)
    subject = subject_of(kind, pk, access)
    fmt = request.GET.get("format", "")
    if fmt in ("html", "json", "csv"):
        data = build_report(subject, access)
        record_access(AuditEvent.Action.EXPORT, actor=request.user, obj=subject, format=fmt)
        if fmt == "json":
            return JsonResponse(data, json_dumps_params={"indent": 1, "default": str})
        if fmt == "csv":
            response = HttpResponse(to_csv(data), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="lineage-{kind}-{pk}.csv"'
            return response
        return HttpResponse(to_html(data))
    jobs = ReportJob.objects.filter(
        subject_type=object_label(subject)[0], subject_id=str(pk), requested_by=request.user
    )[:10]
    return render(
        request, "lineage/report_page.html", {"subject": subject, "kind": kind, "jobs": jobs}
    )


@login_required
@require_POST
def build(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    from lineage.reports.tasks import render_report

    access = Access(user=request.user)
    subject = subject_of(kind, pk, access)
    object_type, object_id, label = object_label(subject)
    use_case = subject if isinstance(subject, UseCase) else subject.use_case  # type: ignore[attr-defined]
    with transaction.atomic():
        job = ReportJob.objects.create(
            subject_type=object_type,
            subject_id=object_id,
            subject_repr=label[:300],
            use_case=use_case,
            requested_by=request.user,
        )
        record(
            AuditEvent.Action.EXPORT,
            actor=request.user,
            obj=subject,
            changes={"report_package": job.pk},
        )
        transaction.on_commit(lambda: render_report.delay(job.pk))
    return redirect("report-job", pk=job.pk)


def _job(request: HttpRequest, pk: int) -> ReportJob:
    job = get_object_or_404(ReportJob, pk=pk, requested_by=request.user)
    if not Access(user=request.user).can_view(job.use_case):
        raise Http404
    return job


@login_required
def job(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job(request, pk)
    template = (
        "lineage/_report_job.html"
        if request.headers.get("HX-Request")
        else "lineage/report_job.html"
    )
    return render(request, template, {"job": job})


@login_required
def download(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job(request, pk)
    if job.state != ReportJob.State.DONE or not job.file:
        raise Http404("the package is not ready")
    record_access(AuditEvent.Action.DOWNLOAD, actor=request.user, obj=job, sha256=job.sha256)
    return harden_download(
        FileResponse(job.file.open("rb"), as_attachment=True, filename=job.file.name.split("/")[-1])
    )
