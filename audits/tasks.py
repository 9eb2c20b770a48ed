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
