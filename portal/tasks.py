"""Celery tasks of the portal: webhook delivery."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_webhook(self: Any, delivery_id: str) -> Any:
    """POST one webhook delivery; on 5xx, 429, timeouts or connection errors try again later.

    The number of tries is counted on the delivery row (``CHARTER_WEBHOOK_MAX_ATTEMPTS``),
    not in the task message, so a redelivered or requeued message cannot exceed it.
    Eagerly (tests), Celery runs the retry at once, without the countdown.
    """
    from portal.webhooks import deliver

    outcome = deliver(delivery_id)
    if outcome.retry_in is None:
        return outcome.status
    options = {"countdown": outcome.retry_in, "max_retries": settings.CHARTER_WEBHOOK_MAX_ATTEMPTS}
    if self.request.is_eager:
        # Eagerly, Celery's apply() runs the retry signature it finds as the return value.
        return self.retry(throw=False, **options)
    raise self.retry(**options)


@shared_task(acks_late=True)
def requeue_stalled_webhooks() -> int:
    """Enqueue pending deliveries whose task message was lost (Celery beat, every 10 min)."""
    from portal.webhooks import requeue_stalled

    return requeue_stalled()


@shared_task
def purge_idempotency() -> int:
    """Forget Idempotency-Key records past their time to live (hourly, Celery beat)."""
    from portal.idempotency import purge_expired

    return purge_expired()
