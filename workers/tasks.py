"""Celery tasks of the monitoring side. Each is idempotent and safe to run twice (acks_late,
reject_on_worker_lost: a task whose worker died is delivered again)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def fold_telemetry_batch(batch_id: int) -> str:
    """Fold one telemetry batch into its window (exactly once, see services.fold_batch)."""
    from workers.services import fold_batch

    return fold_batch(batch_id)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def compute_reference_profile(ref_id: int) -> str:
    """Profile a dataset version's uploaded file into its reference profile (audited)."""
    from audits.context import audit_context
    from workers.services import compute_reference

    with audit_context(channel="task"):
        return compute_reference(ref_id)


@shared_task(acks_late=True)
def evaluate_window(window_id: int) -> bool:
    """Drift, quality, service and label metrics of one window; alert rules if it is closed."""
    from audits.context import audit_context
    from workers.services import evaluate_window as evaluate

    with audit_context(channel="task"):
        return evaluate(window_id) is not None


@shared_task(acks_late=True)
def evaluate_closed_windows() -> int:
    """Evaluate closed windows whose result is missing or behind (Celery beat)."""
    from audits.context import audit_context
    from workers.services import evaluate_closed_windows as evaluate

    with audit_context(channel="task"):
        return evaluate()


@shared_task(acks_late=True)
def fold_stragglers(older_than_s: int = 120) -> int:
    """Re-queue batches whose fold task was lost (Celery beat; an operator may pass a shorter
    ``older_than_s`` after a broker outage)."""
    from workers.services import fold_stragglers as requeue

    return requeue(older_than_s)


@shared_task(acks_late=True)
def prune_telemetry() -> dict[str, int]:
    """Drop folded batches past retention and unlabelled predictions past the horizon."""
    from workers.services import prune

    return prune()


# ---------------------------------------------------------------- retraining


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def submit_retraining_job(job_id: int) -> str:
    """Hand a pending retraining job to its executor (idempotent: see retraining.submit)."""
    from audits.context import audit_context
    from workers import retraining

    with audit_context(channel="task"):
        return retraining.submit(job_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=8)
def poll_retraining_job(job_id: int, seq: int | None = None) -> str:
    """Ask the executor about a job, record what changed, schedule the next poll."""
    import os
    import time

    from audits.context import audit_context
    from workers import retraining

    delay = float(os.environ.get("CHARTER_TEST_POLL_DELAY_S", "0") or 0)
    if delay:  # the fault tests kill the worker while it is inside a poll
        marker = os.environ.get("CHARTER_TEST_POLL_MARKER_DIR")
        if marker:
            open(os.path.join(marker, f"polling-{job_id}-{seq}"), "w").close()  # noqa: SIM115
        time.sleep(delay)
    with audit_context(channel="task"):
        return retraining.poll(job_id, seq)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def cancel_retraining_job(job_id: int) -> str:
    """Stop a job on its executor (then poll at once)."""
    from audits.context import audit_context
    from workers import retraining

    with audit_context(channel="task"):
        return retraining.cancel_on_executor(job_id)


@shared_task(acks_late=True)
def poll_overdue_jobs() -> int:
    """Re-queue polls (and submissions) that were lost (Celery beat)."""
    from audits.context import audit_context
    from workers import retraining

    with audit_context(channel="task"):
        return retraining.poll_overdue()
