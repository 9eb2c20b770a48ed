"""One queued fold per telemetry window: a batch queues its window's fold only if none waits.

A fleet posts a batch every few seconds per replica, and a fold task folds every batch its
window holds (services.fold_batch), so queueing one task per batch costs the web tier a
Celery publish per post and the worker a task per batch that mostly finds its batch folded
already. Instead, an accepted batch *claims* its window's fold — ``SET NX`` on a key in the
broker's Redis — and queues the task only when the claim is new. The task drops the claim
before it looks for the window's waiting batches, so:

* a batch that found the claim taken was committed before the claim was dropped, hence
  before the task looked: the task (or the fold holding it locked) folds it;
* a batch committed after the claim was dropped claims the window anew and queues a task.

A claim expires after ``CLAIM_TTL_S`` in case its task is lost (the broker lost it, the
publish failed after the claim): later batches then queue a fold again, which folds the
waiting ones too; the straggler sweep (Celery beat) is the last resort, as before. Without
a Redis broker (the embedded file-system one), or when Redis does not answer, every batch
queues its fold, as before.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)

#: how long a claim outlives a task that never ran (seconds)
CLAIM_TTL_S = 60
PREFIX = "charter:fold"

_client: Any = None
_client_url = ""
_lock = threading.Lock()


def _redis() -> Any:
    """A client of the broker's Redis (one pool per process), or None for another broker."""
    global _client, _client_url
    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith(("redis://", "rediss://")):
        return None
    with _lock:
        if _client is None or _client_url != url:
            import redis

            _client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            _client_url = url
        return _client


def _key(deployment_id: int, window_start: datetime) -> str:
    # the database's name keeps test databases (and portals sharing a Redis) apart
    name = connection.settings_dict["NAME"]
    return f"{PREFIX}:{name}:{deployment_id}:{int(window_start.timestamp())}"


def claim(deployment_id: int, window_start: datetime | None, batch_id: int) -> bool:
    """True when the caller should queue the window's fold (the claim is its own now, or
    claims cannot be kept: no window, no Redis, Redis not answering)."""
    client = _redis()
    if client is None or window_start is None:
        return True
    try:
        return bool(
            client.set(_key(deployment_id, window_start), batch_id, nx=True, ex=CLAIM_TTL_S)
        )
    except Exception as exc:  # redis.RedisError and socket errors alike: queue the fold
        log.warning("fold claim not kept (%s): the fold is queued", exc)
        return True


def release(deployment_id: int, window_start: datetime | None) -> None:
    """Drop the window's claim (by its fold task, before it looks for waiting batches; or
    when queueing the fold failed)."""
    client = _redis()
    if client is None or window_start is None:
        return
    try:
        client.delete(_key(deployment_id, window_start))
    except Exception as exc:  # an expiring claim is the fallback
        log.warning("fold claim not dropped (%s): it expires in %s s", exc, CLAIM_TTL_S)


def forget_all() -> int:
    """Drop every claim of this database (tests, after purging the broker's queue)."""
    client = _redis()
    if client is None:
        return 0
    keys = list(client.scan_iter(f"{PREFIX}:{connection.settings_dict['NAME']}:*"))
    return client.delete(*keys) if keys else 0
