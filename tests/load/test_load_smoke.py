"""The load test's runner in its short mode, end to end, and its write verification.

Runs ``bench/load/run.py --short`` (a fresh database, gunicorn, a Celery worker process and
locust on loopback, ~20 s of the full mix) and checks its result: every accepted write present
exactly once, nothing else written, the audit chain verified, no failed request. Then it damages
the evidence of that run — a write the log says was accepted but never happened, a row the load
never sent, an evidence item stored twice — and checks that ``verify.py`` reports each one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.worker import test_database_url as _database_url  # not a test here

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("telemetry", "lineage", "model_version", "evidence")

pytestmark = pytest.mark.worker


def _pg_base() -> str:
    return _database_url().rsplit("/", 1)[0]


def _env(database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("load")
    pg = _pg_base()
    from portal.celery import app

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/load/run.py"),
            "--short",
            "--out-dir",
            str(out),
            "--pg",
            pg,
            "--broker",
            str(app.conf.broker_url),
            "--keep-db",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
    database = result.get("config", {}).get("database")
    yield done, result, out, f"{pg}/{database}"
    if database:
        with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_short_run_loses_and_doubles_nothing_and_the_chain_verifies(run: Any) -> None:
    done, result, out, _ = run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert result["ok"] is True
    verification = result["verification"]
    assert verification["ok"] is True, verification["failures"]
    for kind in KINDS:
        counts = verification[kind]
        assert counts["accepted"] > 0, kind  # the mix reached every kind of write
        for field in ("missing", "doubled", "wrong_id", "unexpected", "refused_present"):
            assert counts[field] == 0, (kind, field, counts)
        assert counts["present"] == counts["accepted"] + counts["in_doubt_present"]
    for kind in ("lineage", "model_version", "evidence"):
        audit = verification[kind]["audit"]
        assert audit["objects"] == verification[kind]["present"]
        assert audit["without_audit_event"] == audit["with_several"] == 0
    telemetry = verification["telemetry"]
    assert telemetry["unfolded"] == telemetry["fold_errors"] == 0
    assert telemetry["rows_in_windows"] == telemetry["rows_stored"] >= telemetry["rows_accepted"]
    assert result["audit_chain"]["ok"] is True
    assert result["audit_chain"]["length"] > 0

    # every part of the mix ran, and nothing failed: pages, writes, logins
    endpoints = result["endpoints"]
    for name in (
        "POST /api/v1/deployments/[id]/telemetry/",
        "POST /api/v1/lineage",
        "POST /api/v1/model-versions/",
        "POST /api/v1/evidence/",
        "POST /login/",
        "GET / (dashboard)",
    ):
        assert endpoints[name]["requests"] > 0, name
    assert result["total"]["failures"] == 0, (out / "locust_failures.csv").read_text()
    for field in ("rps", "p50_ms", "p95_ms", "p99_ms", "error_rate"):
        assert field in result["total"]
    assert result["machine"]["nproc"] >= 1 and result["celery"]["drain_s"] is not None


def test_verification_reports_lost_phantom_and_doubled_writes(run: Any) -> None:
    done, result, out, database_url = run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "writes.jsonl").read_text().splitlines() if x]
    # a phantom: a stored telemetry batch whose log lines are gone
    phantom = next(x for x in lines if x["t"] == "telemetry" and x["phase"] == "ok")
    doctored = [x for x in lines if not (x["t"] == "telemetry" and x.get("key") == phantom["key"])]
    # a lost write: the log says accepted, the database never saw it
    lost = {**phantom, "key": "load-never-written"}
    doctored += [{**lost, "phase": "sent"}, lost]
    log = out / "doctored.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in doctored) + "\n")
    # a doubled write: the same evidence stored a second time (through the service layer)
    evidence = next(x for x in lines if x["t"] == "evidence" and x["phase"] == "ok")
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from portal.permissions import Access; from registry import services; "
            "from registry.models import Evidence; "
            f"e = Evidence.objects.get(pk={evidence['answer']['id']}); "
            "services.add_evidence(Access.system(), model_version=e.model_version, "
            "kind=e.kind, title=e.title, sha256=e.sha256)",
        ],
        cwd=ROOT,
        env=_env(database_url),
        check=True,
        capture_output=True,
    )
    checked = subprocess.run(
        [sys.executable, str(ROOT / "bench/load/verify.py"), "--writelog", str(log)],
        cwd=ROOT,
        env=_env(database_url),
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 1
    report = json.loads(checked.stdout)
    assert report["ok"] is False
    assert report["telemetry"]["missing"] == 1
    assert report["telemetry"]["unexpected"] == 1
    assert report["evidence"]["doubled"] == 1
    assert report["lineage"]["missing"] == report["model_version"]["missing"] == 0
    assert any(f.startswith("evidence: 1 doubled") for f in report["failures"])
