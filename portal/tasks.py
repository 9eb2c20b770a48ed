from __future__ import annotations

from celery import shared_task


@shared_task
def purge_idempotency() -> int:
    """Forget Idempotency-Key records past their time to live (hourly, Celery beat)."""
    from portal.idempotency import purge_expired

    return purge_expired()
