"""A fold holds its batches and its window, not the deployment: a fleet keeps posting
telemetry for the deployment whose window a worker is folding."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from portal.celery import app
from tests.monitoring import rig
from workers import foldclaims, services
from workers.models import TelemetryBatch, WindowProfile

HOLD_S = 3.0


@pytest.mark.django_db(transaction=True)
def test_a_fold_in_progress_does_not_hold_up_the_deployments_next_batch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dep, client = rig.deployment_and_fleet()
    stamp = rig.hours_ago(0.01)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    foldclaims.forget_all()
    app.conf.task_always_eager = False  # the posts queue their folds; this test folds
    try:
        assert (
            rig.post(client, dep, {**rig.rows(20, seed=1), "timestamp": stamp}).status_code == 202
        )
        first = TelemetryBatch.objects.get()
        # the fold holds its transaction open HOLD_S seconds once it has locked what it locks
        monkeypatch.setenv("CHARTER_TEST_FOLD_DELAY_S", str(HOLD_S))
        monkeypatch.setenv("CHARTER_TEST_FOLD_MARKER_DIR", str(tmp_path))
        outcome: list[Any] = []

        def fold() -> None:
            try:
                outcome.append(services.fold_group(first.pk))
            except BaseException as exc:  # reported by the assertion below
                outcome.append(exc)
            finally:
                connection.close()

        folding = threading.Thread(target=fold)
        folding.start()
        deadline = time.monotonic() + 20
        while not (tmp_path / f"folding-{first.pk}").exists():
            assert time.monotonic() < deadline, "the fold never reached its hold"
            assert folding.is_alive(), outcome
            time.sleep(0.02)
        started = time.monotonic()
        second = rig.post(client, dep, {**rig.rows(20, seed=2), "timestamp": stamp})
        took = time.monotonic() - started
        still_folding = folding.is_alive()
        folding.join(timeout=HOLD_S + 20)
    finally:
        app.conf.task_always_eager = True
    assert second.status_code == 202, second.content
    # the fold had not committed: the post did not wait for it (before, the fold locked the
    # deployment row FOR UPDATE and every batch's foreign-key check waited out the fold)
    assert still_folding
    assert took < HOLD_S / 2, f"the post waited {took:.2f} s for the fold"
    assert outcome == ["folded"]
    window = WindowProfile.objects.get()
    assert (window.rows, window.batches) == (20, 1)
    assert TelemetryBatch.objects.filter(folded_at__isnull=True).count() == 1  # the second
