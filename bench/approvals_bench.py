"""Approval review cost (issue 4, acceptance 5): the review page and policy evaluation.

    .venv/bin/python bench/approvals_bench.py [--requests 200] [--short] [--json PATH]

``--short``: 50 timed requests/evaluations instead of 200 (same fixture).

Builds, through the service layer, a high-risk use case whose model version has 50
subgroups, 12 evidence items, a signed artifact, a deployed predecessor in production
and an open approval request with decisions; a policy of 20 checks (a mix of the
shipped ones and list macros over the 50 subgroups) judges it. Then times, on
PostgreSQL:

- the review page ``GET /approvals/<id>/`` through Django's test client (in-process:
  server time without the network), p50/p95, and its SQL query count;
- evaluating the 20-check policy for the version (gathering the facts from the
  database + running the CEL programs), p50/p95, and the CEL part alone.

Targets: page p95 < 200 ms, policy evaluation p95 < 20 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.setdefault("BENCH_DATABASE_NAME", "charter_bench_approvals")
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("CHARTER_VAR_DIR", str(ROOT / "var" / "bench"))

CHECKS = [
    {"name": "model card complete", "expression": "model_card.complete"},
    {"name": "artifact signed", "expression": "artifact.present && artifact.signature_verified"},
    {
        "name": "auc vs deployed",
        "expression": "!deployed.present || !has(deployed.metrics.auc) || "
        "(has(metrics.auc) && metrics.auc >= deployed.metrics.auc - 0.01)",
    },
    {
        "name": "worst recall",
        "expression": "has(subgroup_min.recall) && subgroup_min.recall >= 0.8",
    },
    {"name": "worst auc", "expression": "has(subgroup_min.auc) && subgroup_min.auc >= 0.7"},
    {"name": "bias evidence", "expression": "'bias_evaluation' in evidence_types"},
    {"name": "validation evidence", "expression": "'validation_report' in evidence_types"},
    {"name": "security scan", "expression": "'security_scan' in evidence_types"},
    {"name": "no high incident", "expression": "!incidents.exists(i, i.severity == 'high')"},
    {"name": "drift baseline", "expression": "drift_baseline"},
    {"name": "auc floor", "expression": "metrics.auc >= 0.75"},
    {"name": "precision floor", "expression": "metrics.precision >= 0.6"},
    {"name": "recall floor", "expression": "metrics.recall >= 0.7"},
    {"name": "all subgroups recall", "expression": "subgroups.all(s, s.metrics.recall >= 0.8)"},
    {
        "name": "subgroup gap",
        "expression": "subgroups.all(s, metrics.recall - s.metrics.recall <= 0.1)",
    },
    {"name": "subgroups reported", "expression": "size(subgroups) >= 10"},
    {"name": "evidence signed", "expression": "evidence.all(e, e.signature != 'failed')"},
    {"name": "not unacceptable", "expression": "use_case.risk_tier != 'unacceptable'"},
    {"name": "production target", "expression": "environment == 'production'"},
    {"name": "deployed auc floor", "expression": "!deployed.present || deployed.metrics.auc > 0.5"},
]


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB}"')


def build() -> tuple[int, object]:
    import uuid

    from django.contrib.auth.models import Group, User

    from approvals import services as approvals
    from portal.permissions import Access
    from portal.services import grant_access
    from registry import services
    from registry.models import Deployment
    from registry.signing import sign_artifact_as_portal

    system = Access.system()
    tag = uuid.uuid4().hex[:8]

    def user(name: str, role: str) -> User:
        u = User.objects.create_user(f"{name}-{tag}", password="x")
        u.groups.add(Group.objects.get(name=role))
        return u

    contributor = user("contrib", "contributor")
    board = user("board", "governance board")
    uc = services.create_use_case(
        system, name=f"Bench lending {tag}", purpose="p", risk_tier="high"
    )
    grant_access(system, uc, contributor, "contribute")
    access = Access(user=contributor)
    ds = services.create_dataset(access, use_case=uc, name="applications")
    dv = services.create_dataset_version(
        access, dataset=ds, version="v1", quality_summary={"columns": {}}, row_count=10
    )
    model = services.create_model(access, use_case=uc, name="scorer")
    subgroups = {
        f"group {i:02d}": {"recall": 0.81 + (i % 7) / 100, "auc": 0.8, "precision": 0.7}
        for i in range(50)
    }
    card = {
        "intended_use": "x",
        "out_of_scope_uses": "y",
        "limitations": "z",
        "ethical_considerations": "w",
    }

    def version(v: str, auc: float) -> object:
        mv = services.register_model_version(
            access,
            model=model,
            version=v,
            training_datasets=[dv],
            metrics={"auc": auc, "recall": 0.85, "precision": 0.7},
            subgroup_metrics=subgroups,
            **card,
        )
        art = services.add_artifact(
            access,
            model_version=mv,
            name="m.onnx",
            uri="s3://m",
            sha256=f"{v}".ljust(64, "a")[:64].replace(".", "b"),
            size_bytes=1,
        )
        sign_artifact_as_portal(access, art, "https://slsa.dev/provenance/v1", {"v": v})
        for i, kind in enumerate(["bias_evaluation", "validation_report", "security_scan"] * 4):
            services.add_evidence(
                access, model_version=mv, kind=kind, title=f"{kind} {i}", sha256=f"{i:064x}"
            )
        return mv

    old = version("1.0", 0.9)
    Deployment.objects.create(
        model_version=old, use_case=uc, environment="production", released_at=old.created_at
    )
    mv = version("1.1", 0.905)
    policy = approvals.active_policy("high", "production")
    approvals.update_policy(system, policy, checks=CHECKS)
    req = approvals.create_request(access, model_version=mv, environment="production")
    approvals.decide(Access(user=board), req, verdict="approve", comment="looks fine")
    return req.pk, board


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p95(ms: list[float]) -> float:
    ms = sorted(ms)
    return ms[int(len(ms) * 0.95) - 1]


def summary(ms: list[float]) -> str:
    return f"p50 {statistics.median(ms):.1f} ms, p95 {p95(ms):.1f} ms"


PAGE_P95_MS, POLICY_P95_MS = 200.0, 20.0


def main() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import figure, parse, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, help="timed requests per measurement (200)")
    args = parse(parser, full={"requests": 200}, short={"requests": 50})
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.signals import request_finished
    from django.db import close_old_connections, connection
    from django.test import Client

    from approvals import facts, policy
    from approvals.models import ApprovalRequest

    call_command("migrate", verbosity=0)
    # keep one connection across requests (as a pooled server would), so queries can be counted
    request_finished.disconnect(close_old_connections)
    pk, board = build()
    req = ApprovalRequest.objects.select_related("policy", "model_version").get(pk=pk)
    assert len(req.policy.checks) == 20
    client = Client()
    client.force_login(board)  # type: ignore[arg-type]
    url = f"/approvals/{pk}/"
    assert client.get(url).status_code == 200
    queries: list[str] = []

    def count(execute: object, sql: str, params: object, many: bool, context: object) -> object:
        queries.append(sql)
        return execute(sql, params, many, context)  # type: ignore[operator]

    with connection.execute_wrapper(count):
        client.get(url)
    page = timed(lambda: client.get(url), args.requests)

    def evaluate() -> None:
        data = facts.gather(req.model_version, req.environment)
        results = policy.evaluate(req.policy.checks, data)
        assert len(results) == 20

    data = facts.gather(req.model_version, req.environment)
    evaluation = timed(evaluate, args.requests)
    cel_only = timed(lambda: policy.evaluate(req.policy.checks, data), args.requests)
    passed = sum(r.passed for r in policy.evaluate(req.policy.checks, data))
    print(f"review page GET {url}: {summary(page)} ({len(queries)} SQL queries)")
    print(f"policy of 20 checks, 50 subgroups (facts + CEL): {summary(evaluation)}")
    print(f"  of which CEL only: {summary(cel_only)}; {passed}/20 checks pass")
    median = statistics.median
    figures = [
        figure(
            "review page GET /approvals/<id>/ p95",
            p95(page),
            "ms",
            target=f"< {PAGE_P95_MS:.0f} ms",
            ok=p95(page) < PAGE_P95_MS,
            note=f"p50 {median(page):.1f} ms; {len(queries)} SQL queries",
        ),
        figure(
            "policy evaluation (facts from PostgreSQL + 20 CEL checks, 50 subgroups) p95",
            p95(evaluation),
            "ms",
            target=f"< {POLICY_P95_MS:.0f} ms",
            ok=p95(evaluation) < POLICY_P95_MS,
            note=f"p50 {median(evaluation):.1f} ms",
        ),
        figure(
            "of which the 20 CEL programs alone, p95",
            p95(cel_only),
            "ms",
            note=f"p50 {median(cel_only):.2f} ms; {passed}/20 checks pass",
        ),
        figure("review page SQL queries", len(queries), "queries"),
    ]
    write_json(args, bench="approvals", figures=figures)


if __name__ == "__main__":
    main()
