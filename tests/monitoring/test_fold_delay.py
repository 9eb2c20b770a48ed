"""A batch's fold is queued a few seconds after it is accepted (CHARTER_TELEMETRY_FOLD_DELAY_S),
so that a real worker folds what a fleet sent meanwhile in one go: the window is written once,
not once per batch, and still holds every row exactly once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from portal import roles
from tests import factories as f
from tests.monitoring import rig
from tests.worker import celery_worker, wait_for
from workers.models import TelemetryBatch, WindowProfile

BATCHES, ROWS = 8, 40


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_batches_sent_within_the_delay_are_folded_by_one_task(settings: Any) -> None:
    settings.CHARTER_TELEMETRY_FOLD_DELAY_S = 3
    uc = f.use_case()
    dv = f.dataset_version(f.dataset(uc))
    rig.install_reference(dv)
    dep = f.deployment(f.model_version(f.model(uc), training_datasets=[dv]))
    client = APIClient()
    client.force_authenticate(f.user(roles=(roles.ADMIN,)))
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
