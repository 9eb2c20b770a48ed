"""A batch's fold is queued a few seconds after it is accepted (CHARTER_TELEMETRY_FOLD_DELAY_S),
so that a real worker folds what a fleet sent meanwhile in one go: the window is written once,
not once per batch, and still holds every row exactly once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone

from portal.celery import app
from tests.monitoring import rig
from tests.worker import celery_worker, wait_for
from workers import foldclaims
from workers.models import TelemetryBatch, WindowProfile

BATCHES, ROWS = 8, 40


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_batches_sent_within_the_delay_are_folded_by_one_task(settings: Any) -> None:
    settings.CHARTER_TELEMETRY_FOLD_DELAY_S = 3
    dep, client = rig.deployment_and_fleet()
    stamp = rig.hours_ago(0.01)
    with celery_worker():
        started = time.monotonic()
        for i in range(BATCHES):
            body = {**rig.rows(ROWS, seed=i), "timestamp": stamp}
            assert rig.post(client, dep, body, k=f"delay-{i}").status_code == 202
        sent_in = time.monotonic() - started
        assert sent_in < 2.5, f"sending took {sent_in:.1f} s: the test needs them within 3 s"
        time.sleep(max(0.0, 1.5 - sent_in))
        assert not TelemetryBatch.objects.filter(folded_at__isnull=False).exists()  # not yet
        assert wait_for(
            lambda: not TelemetryBatch.objects.filter(folded_at__isnull=True).exists(), timeout=60
        )
    window = WindowProfile.objects.get()
    assert (window.rows, window.batches) == (ROWS * BATCHES, BATCHES)
    assert window.version == 1  # one fold wrote the window, for all eight batches
    assert window.predictions["count"] == ROWS * BATCHES


def _queued() -> int:
    """Fold tasks waiting in the broker (no worker is running)."""
    with app.connection_for_write() as conn:
        return conn.default_channel.client.llen("celery")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_window_queues_one_fold_while_one_waits_and_a_new_one_after_it_ran() -> None:
    """Each window's first batch queues the fold, the rest find it claimed and queue
    nothing; the fold drops the claim before it looks, and folds them all; a batch after
    that queues a fold again (workers/foldclaims.py)."""
    dep, client = rig.deployment_and_fleet()
    now, earlier = rig.hours_ago(0.01), rig.hours_ago(2.01)  # two windows
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    foldclaims.forget_all()
    app.conf.task_always_eager = False
    try:
        for i in range(6):
            body = {**rig.rows(ROWS, seed=i), "timestamp": now if i % 3 else earlier}
            assert rig.post(client, dep, body, k=f"claim-{i}").status_code == 202
        assert _queued() == 2  # one fold per window, not one per batch
    finally:
        app.conf.task_always_eager = True
    with celery_worker(purge=False):
        assert wait_for(
            lambda: not TelemetryBatch.objects.filter(folded_at__isnull=True).exists(), timeout=60
        )
        windows = list(WindowProfile.objects.order_by("start"))
        assert [(w.rows, w.batches, w.version) for w in windows] == [
            (ROWS * 2, 2, 1),
            (ROWS * 4, 4, 1),
        ]
        body = {**rig.rows(ROWS, seed=9), "timestamp": now}
        assert rig.post(client, dep, body, k="claim-after").status_code == 202
        assert wait_for(
            lambda: not TelemetryBatch.objects.filter(folded_at__isnull=True).exists(), timeout=60
        )
    later = WindowProfile.objects.get(pk=windows[1].pk)
    assert (later.rows, later.batches, later.version) == (ROWS * 5, 5, 2)


@pytest.mark.django_db
def test_a_claim_is_taken_once_until_dropped_and_without_redis_never_holds(settings: Any) -> None:
    start = rig.window_start_of(timezone.now())
    foldclaims.forget_all()
    assert foldclaims.claim(7, start, 1) is True
    assert foldclaims.claim(7, start, 2) is False  # a fold of this window is queued
    assert foldclaims.claim(8, start, 3) is True  # another deployment's window
    foldclaims.release(7, start)
    assert foldclaims.claim(7, start, 4) is True
    assert foldclaims.claim(7, None, 5) is True  # labels: no window, always queued
    foldclaims.forget_all()
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert [foldclaims.claim(7, start, n) for n in (6, 7)] == [True, True]
    foldclaims.release(7, start)  # logged, not raised
    settings.CELERY_BROKER_URL = "filesystem://"
    assert [foldclaims.claim(7, start, n) for n in (8, 9)] == [True, True]
