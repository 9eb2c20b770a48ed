from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def make_checkpoint() -> int | None:
    """Sign the audit chain head (run hourly by Celery beat); the checkpoint's seq or None."""
    from audits.context import audit_context
    from audits.services import create_checkpoint

    with audit_context(channel="task"):
        checkpoint = create_checkpoint()
    return checkpoint.seq if checkpoint is not None else None


@shared_task(acks_late=True)
def verify_chain_run(run_id: int) -> bool | None:
    """Walk the chain for a VerificationRun and store the verdict (idempotent)."""
    from django.utils import timezone

    from audits.models import VerificationRun
    from audits.verify import verify_chain

    run = VerificationRun.objects.filter(pk=run_id, finished_at__isnull=True).first()
    if run is None:
        return None
    result = verify_chain(deep=True)
    VerificationRun.objects.filter(pk=run_id).update(
        finished_at=timezone.now(),
        ok=result.ok,
        length=result.length,
        head_hash=result.head_hash,
        first_bad_seq=result.first_bad_seq,
        reason=result.reason,
        checkpoints=result.checked_checkpoints,
    )
    return result.ok
