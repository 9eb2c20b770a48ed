"""A real Celery worker on Redis is killed with SIGKILL in the middle of a fold; a restarted
worker folds the rest; the window holds exactly the rows that were sent."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from rest_framework.test import APIClient

from portal import roles
from tests import factories as f
from tests.monitoring import rig
from tests.worker import celery_worker, wait_for
from workers import services
from workers.drift import DatasetProfile, fold, window_profile
from workers.models import TelemetryBatch, WindowProfile

BATCHES, ROWS = 6, 250


def _folding(marker_dir: Path) -> set[int]:
    return {int(p.name.split("-")[1]) for p in marker_dir.glob("folding-*")}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_fold_then_restart_counts_every_row_exactly_once(tmp_path: Path) -> None:
    uc = f.use_case()
    dv = f.dataset_version(f.dataset(uc))
    mv = f.model_version(f.model(uc), training_datasets=[dv])
    rig.install_reference(dv)
    dep = f.deployment(mv)
    client = APIClient()
    client.force_authenticate(f.user(roles=(roles.ADMIN,)))
    bodies = [rig.rows(ROWS, seed=i) for i in range(BATCHES)]
    stamp = rig.hours_ago(0.01)
    slow = {
        "CHARTER_TEST_FOLD_DELAY_S": "1.5",
        "CHARTER_TEST_FOLD_MARKER_DIR": str(tmp_path),
        "CELERY_VISIBILITY_TIMEOUT": "2",
    }

    def folded() -> set[int]:
        return set(
            TelemetryBatch.objects.filter(folded_at__isnull=False).values_list("pk", flat=True)
        )

    def send(first: int, last: int) -> None:
        for i in range(first, last):
            response = rig.post(client, dep, {**bodies[i], "timestamp": stamp}, k=f"kill-{i}")
            assert response.status_code == 202, response.json()

    with celery_worker(extra_env=slow) as proc:
        # a first half folded (a fold takes the window's waiting batches along with its
        # own), then the worker killed inside the fold of the second half
        send(0, BATCHES // 2)
        assert wait_for(lambda: len(folded()) == BATCHES // 2, timeout=60)
        send(BATCHES // 2, BATCHES)
        assert wait_for(lambda: _folding(tmp_path) - folded(), timeout=60)
        victim = min(_folding(tmp_path) - folded())
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    before = WindowProfile.objects.get()
    assert TelemetryBatch.objects.get(pk=victim).folded_at is None  # its fold rolled back
    assert before.rows == ROWS * len(folded()) < ROWS * BATCHES
    with celery_worker(extra_env={"CELERY_VISIBILITY_TIMEOUT": "2"}, purge=False):
        done = wait_for(lambda: len(folded()) == BATCHES, timeout=120)
    assert done, f"folded {len(folded())} of {BATCHES}; see var/test/worker-test.log"
    window = WindowProfile.objects.get()
    assert window.rows == ROWS * BATCHES
    assert window.batches == BATCHES
    got = DatasetProfile.from_dict(window.profile)
    expected = fold(
        window_profile(services.inputs_of(services.reference_for(dep))),
        {name: [v for b in bodies for v in b["features"][name]] for name in rig.FEATURES},
    )
    for name in rig.FEATURES:
        assert got[name].count == ROWS * BATCHES, name
        assert got[name].values == expected[name].values, name
        if got[name].numeric:
            assert np.array_equal(got[name].bin_counts, expected[name].bin_counts), name
    assert window.predictions["count"] == ROWS * BATCHES
    assert not TelemetryBatch.objects.filter(folded_at__isnull=True).exists()
