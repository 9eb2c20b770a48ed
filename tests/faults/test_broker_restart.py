"""The broker (a private Redis without persistence) is restarted while a serving fleet posts
telemetry through the Python client to a real portal process, and the Celery worker is
killed with SIGKILL in the middle of a fold. After recovery (a new worker, the straggler
sweep that Celery beat runs) each window holds exactly the rows the portal accepted."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from charter_client import CharterError, Client
from django.conf import settings
from django.contrib.auth.models import Group

from portal import roles
from portal.permissions import Access
from portal.services import create_service_account, grant_access, issue_token
from tests import factories as f
from tests import worker
from tests.faults.servers import PYTHON, ROOT, PortalServer, PrivateRedis, charter_env
from tests.monitoring import rig
from tests.worker import celery_worker, wait_for
from workers.models import TelemetryBatch, WindowProfile

MAX_BATCHES, ROWS = 60, 120


def _folding(marker_dir: Path) -> set[int]:
    return {int(p.name.split("-")[1]) for p in marker_dir.glob("folding-*")}


def _folded() -> set[int]:
    return set(TelemetryBatch.objects.filter(folded_at__isnull=False).values_list("pk", flat=True))


def _post(
    client: Client, dep: int, stamp: str, i: int, accepted: list[Any], failed: list[str]
) -> None:
    body = rig.rows(ROWS, seed=100 + i)
    try:
        answer = client.post_telemetry(dep, body["features"], body["predictions"], timestamp=stamp)
    except (CharterError, OSError) as exc:
        failed.append(f"batch {i}: {exc}")
    else:
        accepted.append(answer)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_broker_restart_and_worker_sigkill_lose_and_double_nothing(
    private_redis: PrivateRedis, tmp_path: Path, log_dir: Path
) -> None:
    uc = f.use_case()
    dv = f.dataset_version(f.dataset(uc))
    rig.install_reference(dv)
    dep = f.deployment(f.model_version(f.model(uc), training_datasets=[dv]))
    system = Access.system()
    account = create_service_account(
        system, username="serving-fleet", groups=[Group.objects.get(name=roles.CONTRIBUTOR)]
    )
    grant_access(system, uc, account.user, "contribute")
    _, token = issue_token(system, user=account.user, name="fleet", use_cases=[uc])

    broker = {"CELERY_BROKER_URL": private_redis.url, "CELERY_VISIBILITY_TIMEOUT": "2"}
    env = charter_env(
        DATABASE_URL=worker.test_database_url(),
        CHARTER_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        CHARTER_VAR_DIR=str(log_dir / "broker-var"),
        **broker,
    )
    slow = {
        **broker,
        "CHARTER_TEST_FOLD_DELAY_S": "0.6",
        "CHARTER_TEST_FOLD_MARKER_DIR": str(tmp_path),
    }
    server = PortalServer(env, log_dir / "broker-portal.log", threads=4)
    server.start()
    accepted: list[dict[str, Any]] = []
    failed: list[str] = []
    client = Client(server.url, token, timeout=20, retries=8, backoff=0.2, max_backoff=2.0)
    stamp = rig.hours_ago(0.01)
    stop = threading.Event()

    def fleet() -> None:
        """Post batches until told to stop (the fleet does not pause for the outage)."""
        for i in range(1, MAX_BATCHES):
            if stop.is_set():
                return
            _post(client, dep.pk, stamp, i, accepted, failed)
            time.sleep(0.2)

    def posted() -> int:
        return len(accepted) + len(failed)

    poster = threading.Thread(target=fleet)
    try:
        with celery_worker(extra_env=slow, purge=False) as proc:
            _post(client, dep.pk, stamp, 0, accepted, failed)
            assert wait_for(lambda: _folding(tmp_path), timeout=90), "the worker did not start"
            poster.start()
            # SIGKILL the worker while it is inside the fold of a batch the fleet posted
            first = {accepted[0]["id"]}
            assert wait_for(lambda: _folding(tmp_path) - _folded() - first, timeout=60)
            victim = min(_folding(tmp_path) - _folded() - first)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert TelemetryBatch.objects.get(pk=victim).folded_at is None  # rolled back
        # the broker goes away (and with it every queued and unacknowledged message) while
        # the fleet keeps posting
        private_redis.stop()
        before_outage = posted()
        assert wait_for(lambda: posted() >= before_outage + 3, timeout=60)
        private_redis.start()
        during_outage = posted() - before_outage
        with celery_worker(extra_env=broker, purge=False):
            after = posted()
            assert wait_for(lambda: posted() >= after + 3, timeout=60)
            stop.set()
            poster.join(timeout=60)
            assert not poster.is_alive(), "the poster hangs"
            # what Celery beat does every 10 minutes: re-queue batches whose task was lost
            sweep = subprocess.run(
                [
                    PYTHON, "-m", "celery", "-A", "portal", "call",
                    "workers.tasks.fold_stragglers", "--kwargs", '{"older_than_s": 0}',
                ],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert sweep.returncode == 0, sweep.stdout + sweep.stderr
            ids = {a["id"] for a in accepted}
            done = wait_for(lambda: ids <= _folded(), timeout=60)
    finally:
        stop.set()
        if poster.is_alive():
            poster.join(timeout=60)
        server.stop()
    assert not failed, f"batches the client gave up on: {failed}\n{server.output()[-3000:]}"
    assert done, f"folded {len(_folded() & ids)} of {len(ids)}; see var/test/worker-test.log"
    batches = len(accepted)
    assert before_outage >= 2 and during_outage >= 3 and batches - after >= 3
    assert TelemetryBatch.objects.count() == batches  # each accepted batch stored once
    windows = list(WindowProfile.objects.filter(deployment=dep))
    assert sum(w.rows for w in windows) == ROWS * batches  # nothing lost, nothing twice
    assert sum(w.batches for w in windows) == batches
    assert sum(w.predictions["count"] for w in windows) == ROWS * batches
    for w in windows:
        profile = w.profile
        assert all(feat["count"] == w.rows for feat in profile["features"].values()), profile
