from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def expire_approvals() -> int:
    """Approved requests past their validity become expired (hourly, Celery beat)."""
    from approvals.services import expire_approvals as expire
    from audits.context import audit_context

    with audit_context(channel="task"):
        return expire()


@shared_task(acks_late=True)
def open_due_reviews() -> int:
    """Open the periodic reviews that have fallen due (daily, Celery beat)."""
    from approvals.services import open_due_reviews as open_due
    from audits.context import audit_context

    with audit_context(channel="task"):
        return open_due()
