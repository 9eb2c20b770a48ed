"""Registry list performance at scale (issue 2, acceptance 7).

Fills PostgreSQL with 2,000 use cases, 20,000 model versions and 100,000 evidence
items, then times the inventory page and the model-version list API through
Django's test client (in-process: server time without the network), reporting
p50/p95 and the SQL query count per request at two page sizes.

    .venv/bin/python bench/registry_bench.py [--requests 200] [--use-cases 2000]
        [--short] [--json PATH]

``--short``: 200 use cases (2,000 versions, 10,000 evidence items), 20 requests per URL.

The fill uses bulk inserts (not the service layer) to take seconds rather than
hours; it writes no audit events, which list requests do not read anyway.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DB = os.environ.setdefault("BENCH_DATABASE_NAME", "charter_bench")
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("CHARTER_VAR_DIR", str(ROOT / "var" / "bench"))

USE_CASES, MODEL_VERSIONS, EVIDENCE = 2_000, 20_000, 100_000  # the sizes (full mode)
P95_TARGET_MS = 150.0


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB}"')


def fill(use_cases: int = USE_CASES) -> None:
    from django.contrib.auth.models import Group, User
    from django.db import transaction
    from django.utils import timezone

    from portal.permissions import Access
    from portal.services import grant_access
    from registry.models import Evidence, Model, ModelVersion, UseCase

    if UseCase.objects.count() >= use_cases:
        return
    model_versions, evidence = use_cases * 10, use_cases * 50
    started = time.perf_counter()
    tiers = ["unacceptable", "high", "limited", "minimal"]
    statuses = ["proposed", "assessed", "approved", "in_production", "under_review", "retired"]
    with transaction.atomic():
        UseCase.objects.bulk_create(
            UseCase(
                name=f"Use case {i:05d}",
                purpose=f"Bench purpose {i}",
                risk_tier=tiers[i % 4],
                status=statuses[i % 6],
                next_review_date=timezone.localdate(),
            )
            for i in range(use_cases)
        )
        ucs = list(UseCase.objects.order_by("id"))
        Model.objects.bulk_create(Model(use_case=uc, name=f"model-{uc.pk}") for uc in ucs)
        models = list(Model.objects.order_by("id"))
        per_model = model_versions // len(models)
        ModelVersion.objects.bulk_create(
            (
                ModelVersion(
                    model=m,
                    use_case_id=m.use_case_id,
                    version=f"1.{v}",
                    intended_use="bench",
                    metrics={"auc": 0.8 + v / 100},
                    subgroup_metrics={f"g{g}": {"recall": 0.8} for g in range(5)},
                )
                for m in models
                for v in range(per_model)
            ),
            batch_size=2000,
        )
        mv_ids = list(ModelVersion.objects.order_by("id").values_list("id", "use_case_id"))
        per_mv = evidence // len(mv_ids)
        Evidence.objects.bulk_create(
            (
                Evidence(
                    use_case_id=uc_id,
                    model_version_id=mv_id,
                    kind="validation_report",
                    title=f"Evidence {mv_id}/{e}",
                    sha256=hashlib.sha256(f"{mv_id}/{e}".encode()).hexdigest(),
                )
                for mv_id, uc_id in mv_ids
                for e in range(per_mv)
            ),
            batch_size=5000,
        )
        board = User.objects.create_user("bench_board", password="x")
        board.groups.add(Group.objects.get(name="governance board"))
        contrib = User.objects.create_user("bench_contrib", password="x")
        contrib.groups.add(Group.objects.get(name="contributor"))
        for uc in ucs[::10]:  # 200 grants: the object-permission path
            grant_access(Access.system(), uc, contrib, "contribute")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"filled in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def measure(client, url: str, n: int) -> dict:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(5):
        assert client.get(url).status_code == 200
    times, queries = [], set()
    for _ in range(n):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        queries.add(len(ctx.captured_queries))
    times.sort()
    return {
        "url": url,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * len(times)) - 1], 2),
        "queries": sorted(queries),
    }


def main() -> None:
    from _common import parse

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, help="timed requests per URL (200)")
    parser.add_argument("--use-cases", type=int, help="use cases to fill (2,000; ×10 versions)")
    parser.add_argument("--api-only", action="store_true", help="skip the HTML pages")
    args = parse(
        parser,
        full={"requests": 200, "use_cases": USE_CASES},
        short={"requests": 20, "use_cases": 200},
    )
    ensure_database()
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.DEBUG = False
    call_command("migrate", verbosity=0)
    fill(args.use_cases)
    from registry.models import Evidence, ModelVersion, UseCase

    counts = {
        "use_cases": UseCase.objects.count(),
        "model_versions": ModelVersion.objects.count(),
        "evidence": Evidence.objects.count(),
    }
    results = []
    for username in ("bench_board", "bench_contrib"):
        client = Client()
        client.force_login(User.objects.get(username=username))
        for url in (
            "/use-cases/",
            f"/use-cases/?page={max(1, args.use_cases // 50)}",  # 40 at full size
            "/use-cases/?risk_tier=high&q=Use",
            "/api/v1/model-versions/?page_size=10",
            "/api/v1/model-versions/",
            "/api/v1/model-versions/?page_size=100",
            "/api/v1/model-versions/?page_size=100&status=registered&ordering=-created_at",
        ):
            if args.api_only and not url.startswith("/api/"):
                continue
            row = measure(client, url, args.requests)
            row["user"] = username
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    out = {"counts": counts, "requests_per_url": args.requests, "results": results}
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "registry.json").write_text(json.dumps(out, indent=2))
    print("| user | URL | p50 ms | p95 ms | SQL queries/request |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['user']} | `{r['url']}` | {r['p50_ms']} | {r['p95_ms']} | {r['queries']} |")
    write_figures(args, counts, results)


def write_figures(args: argparse.Namespace, counts: dict, results: list[dict]) -> None:
    from _common import figure, write_json

    figures = []
    for r in results:
        figures.append(
            figure(
                f"{r['user']} `{r['url']}` p95",
                r["p95_ms"],
                "ms",
                target=f"< {P95_TARGET_MS:.0f} ms",
                ok=r["p95_ms"] < P95_TARGET_MS,
                note=f"p50 {r['p50_ms']} ms; {r['queries']} SQL queries/request",
            )
        )
    for user in ("bench_board", "bench_contrib"):
        for prefix, label in (
            ("/api/v1/model-versions/", "model-version list API"),
            ("/use-cases/", "inventory page"),
        ):
            rows = [
                r
                for r in results
                if r["user"] == user and r["url"].startswith(prefix) and "q=" not in r["url"]
            ]
            if not rows:
                continue
            counts_seen = sorted({q for r in rows for q in r["queries"]})
            figures.append(
                figure(
                    f"{user} {label}: SQL queries/request over {len(rows)} page sizes/pages",
                    max(counts_seen),
                    "queries",
                    target="independent of the rows on the page",
                    ok=len(counts_seen) == 1,
                    note=f"distinct counts {counts_seen}",
                )
            )
    write_json(
        args,
        bench="registry",
        figures=figures,
        extra={"counts": counts, "results": results},
    )


if __name__ == "__main__":
    main()
