from __future__ import annotations

import hashlib

from celery import shared_task


@shared_task(acks_late=True)
def render_report(job_id: int) -> str | None:
    """Render a report package for a ReportJob, updating its progress as parts finish."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from audits.context import audit_context
    from audits.models import ReportJob
    from lineage.reports.views import SUBJECTS, subject_of
    from portal.permissions import Access

    job = ReportJob.objects.filter(pk=job_id, state__in=["queued", "running"]).first()
    if job is None:
        return None
    user = get_user_model().objects.get(pk=job.requested_by_id)
    access = Access(user=user)
    kind = next(k for k, m in SUBJECTS.items() if m._meta.label_lower == job.subject_type)
    subject = subject_of(kind, job.subject_id, access)

    def progress(pct: int, step: str) -> None:
        ReportJob.objects.filter(pk=job_id).update(state="running", progress=pct, step=step)

    from lineage.reports.package import build_package

    try:
        with audit_context(channel="task"):
            data, _ = build_package(subject, access, progress)
    except Exception as exc:  # noqa: BLE001  (the job records any failure for the user)
        ReportJob.objects.filter(pk=job_id).update(
            state="failed", error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        raise
    name = f"report-{job.subject_type.split('.')[-1]}-{job.subject_id}-{job.pk}.zip"
    job.file.save(name, ContentFile(data), save=False)
    ReportJob.objects.filter(pk=job_id).update(
        file=job.file.name,
        sha256=hashlib.sha256(data).hexdigest(),
        state="done",
        progress=100,
        step="done",
        finished_at=timezone.now(),
    )
    return job.file.name
