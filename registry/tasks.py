from __future__ import annotations

import logging

from celery import shared_task

from registry.models import DatasetVersion
from registry.services import apply_dataset_summary
from registry.summary import summarize_csv

log = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def summarize_dataset_version(version_id: int) -> str:
    """Compute digest, size, rows, schema and null counts of an uploaded file.

    Idempotent: it recomputes from the file and stores the same values again,
    which the service layer records only if something changed.
    """
    from audits.context import audit_context

    version = DatasetVersion.objects.filter(pk=version_id).first()
    if version is None or not version.file:
        return "gone"
    with audit_context(channel="task"):
        try:
            with version.file.open("rb") as stream:
                summary = summarize_csv(stream)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("dataset version %s: cannot summarise: %s", version_id, exc)
            apply_dataset_summary(version_id, None, error=str(exc))
            return "failed"
        apply_dataset_summary(version_id, summary)
    return "ready"


@shared_task(acks_late=True)
def run_mlflow_import(job_id: int) -> str:
    """Run an import asked for in the portal (idempotent: a rerun changes nothing)."""
    from audits.context import audit_context
    from registry.mlflow_import import run_job

    with audit_context(channel="task"):
        return run_job(job_id)
