"""PostgreSQL is restarted (fast: sessions killed, open transactions rolled back) while
pipelines write through the Python client to a real portal process. The clients ride it
out by retrying; afterwards every write they were told was accepted is there exactly once,
nothing is half-written, and the audit chain verifies."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

from charter_client import CharterError, Client

from tests.faults.servers import PortalServer, PrivatePostgres, charter_env, manage, run_script

THREADS, WRITES = 4, 8  # each write: a model version, then an evidence item on it

SEED = """
from django.contrib.auth.models import Group
from portal import roles
from portal.permissions import Access
from portal.services import create_service_account, grant_access, issue_token
from registry import services
system = Access.system()
uc = services.create_use_case(system, name="Faults", purpose="Survive restarts.", risk_tier="high")
model = services.create_model(system, use_case=uc, name="scorer")
account = create_service_account(
    system, username="faults-pipeline", groups=[Group.objects.get(name=roles.CONTRIBUTOR)]
)
grant_access(system, uc, account.user, "contribute")
_, token = issue_token(system, user=account.user, name="ci", use_cases=[uc])
print(json.dumps({"model": model.pk, "token": token}))
"""

STATE = """
from audits.models import AuditEvent
from registry.models import Evidence, ModelVersion
def created(model):
    return sorted(
        int(i) for i in AuditEvent.objects.filter(
            action="create", object_type=model._meta.label_lower
        ).values_list("object_id", flat=True)
    )
print(json.dumps({
    "versions": [[v.pk, v.version, v.metrics] for v in ModelVersion.objects.order_by("pk")],
    "evidence": [
        [e.pk, e.model_version_id, e.title, e.sha256] for e in Evidence.objects.order_by("pk")
    ],
    "version_events": created(ModelVersion),
    "evidence_events": created(Evidence),
}))
"""


def _writer(
    client: Client, model: int, n: int, accepted: list[dict[str, Any]], failed: list[str]
) -> None:
    for j in range(WRITES):
        name = f"{n}.{j}"
        try:
            mv = client.register_model_version(
                model, name, metrics={"auc": 0.8 + j / 1000}, intended_use="Survive restarts."
            )
            sha = hashlib.sha256(name.encode()).hexdigest()
            ev = client.add_evidence(
                "test_results", f"tests {name}", sha, model_version=mv["id"], size_bytes=64
            )
        except (CharterError, OSError, ValueError) as exc:
            failed.append(f"{name}: {exc}")
            continue
        accepted.append({"version": mv, "evidence": ev, "sha": sha})


def test_writes_survive_a_postgres_restart(private_pg: PrivatePostgres, log_dir: Path) -> None:
    env = charter_env(
        DATABASE_URL=private_pg.url("charter"),
        CHARTER_VAR_DIR=str(log_dir / "pg-restart-var"),
        CELERY_BROKER_URL="memory://",  # no task is queued by these writes
    )
    seed = run_script(SEED, env)
    server = PortalServer(env, log_dir / "pg-restart-portal.log")
    server.start()
    try:
        client = Client(
            server.url, seed["token"], timeout=20, retries=10, backoff=0.2, max_backoff=2.0
        )
        accepted: list[dict[str, Any]] = []
        failed: list[str] = []
        threads = [
            threading.Thread(target=_writer, args=(client, seed["model"], n, accepted, failed))
            for n in range(THREADS)
        ]
        for t in threads:
            t.start()
        # restart twice while the stream runs: once early, once when it is in full flow
        for at in (4, THREADS * WRITES // 2):
            deadline = time.monotonic() + 60
            while len(accepted) + len(failed) < at and time.monotonic() < deadline:
                time.sleep(0.02)
            private_pg.restart(down_for=0.5)
        for t in threads:
            t.join(timeout=180)
        assert not any(t.is_alive() for t in threads), "a writer hangs"
    finally:
        server.stop()
    log = server.output()
    assert not failed, f"writes the client gave up on: {failed}\n{log[-3000:]}"
    assert len(accepted) == THREADS * WRITES
    # the restarts did hit requests: the portal answered some with 503 and the client retried
    assert " 503 " in log, log[-3000:]

    state = run_script(STATE, env)
    versions = {row[0]: row for row in state["versions"]}
    evidence = {row[0]: row for row in state["evidence"]}
    # every accepted write is present, once, as the client was told
    assert sorted(a["version"]["id"] for a in accepted) == sorted(versions)
    assert sorted(a["evidence"]["id"] for a in accepted) == sorted(evidence)
    for a in accepted:
        pk, version, metrics = versions[a["version"]["id"]]
        assert (version, metrics) == (a["version"]["version"], a["version"]["metrics"])
        _, mv, title, sha = evidence[a["evidence"]["id"]]
        assert (mv, sha) == (pk, a["sha"]), title
    # nothing half-written: each object has exactly one "create" audit event, and no event
    # names an object that is not there
    assert state["version_events"] == sorted(versions)
    assert state["evidence_events"] == sorted(evidence)

    result = manage("verify_audit", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chain intact" in result.stdout
