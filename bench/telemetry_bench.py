"""Telemetry ingestion throughput (issue 7): columnar JSON batches through the REST API and the
fold task, on PostgreSQL, in one process (Django's test client: server time without the
network, one core).

    .venv/bin/python bench/telemetry_bench.py [--batches 60 --rows 1000] [--short] [--json PATH]

``--short``: 20 batches. The peer is raw PostgreSQL: the same JSON bodies inserted as
``jsonb`` into a plain table by psycopg, one commit per batch.

Three measurements on a deployment whose reference profile has 4 features (2 continuous, one
integer, one categorical) and a prediction column:

1. intake only — POST .../telemetry/ (parse, schema check, idempotency lookup, store, queue);
2. fold only — the fold task on the stored batches (load window, fold, save, in one transaction);
3. end to end — POST with the fold run eagerly after each commit, as one worker would.
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
DB = os.environ.setdefault("BENCH_DATABASE_NAME", "charter_monitoring_bench")
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("CHARTER_VAR_DIR", str(ROOT / "var" / "bench"))
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB}"')


def setup_deployment() -> tuple[object, object]:
    import numpy as np
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from portal.permissions import Access
    from registry import services as registry
    from workers import services
    from workers.drift import build_reference_profile

    system = Access.system()
    n = int(time.time())
    uc = registry.create_use_case(system, name=f"Bench {n}", purpose="bench")
    ds = registry.create_dataset(system, use_case=uc, name="train")
    dv = registry.create_dataset_version(system, dataset=ds, version="1")
    model = registry.create_model(system, use_case=uc, name="m")
    mv = registry.register_model_version(system, model=model, version="1", training_datasets=[dv])
    dep = registry.record_deployment(
        system, model_version=mv, environment="staging", released_at=timezone.now()
    )
    rng = np.random.default_rng(0)
    columns = {
        "age": rng.normal(40, 10, 20_000).round(),
        "income": rng.lognormal(10, 0.5, 20_000),
        "tenure": rng.gamma(2.0, 30.0, 20_000),
        "region": rng.choice(["north", "south", "east", "west"], 20_000),
        "score": rng.uniform(0, 1, 20_000),
    }
    profile = build_reference_profile(columns, rng=1).to_dict()
    services.set_reference_profile(system, dv, profile=profile, prediction_column="score")
    user, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_superuser": True})
    user.groups.add(Group.objects.get(name="admin"))
    return dep, user


def batch(rows: int, seed: int) -> dict[str, object]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "features": {
            "age": rng.normal(40, 10, rows).round().tolist(),
            "income": rng.lognormal(10, 0.5, rows).tolist(),
            "tenure": rng.gamma(2.0, 30.0, rows).tolist(),
            "region": rng.choice(["north", "south", "east", "west"], rows).tolist(),
        },
        "predictions": rng.uniform(0, 1, rows).tolist(),
        "latency_ms": rng.gamma(3.0, 10.0, rows).tolist(),
        "errors": 0,
    }


def main() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import figure, parse, write_json

    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, help="batches per measurement (60)")
    parser.add_argument("--rows", type=int, help="rows per batch (1,000)")
    args = parse(parser, full={"batches": 60, "rows": 1000}, short={"batches": 20, "rows": 1000})
    ensure_database()
    import django

    django.setup()
    import json

    from django.core.management import call_command
    from django.db import connection
    from rest_framework.test import APIClient

    from portal.celery import app
    from workers import services
    from workers.models import TelemetryBatch, WindowProfile

    call_command("migrate", verbosity=0)
    dep, user = setup_deployment()
    client = APIClient()
    client.force_authenticate(user)
    url = f"/api/v1/deployments/{dep.pk}/telemetry/"
    bodies = [json.dumps({"idempotency_key": f"b{i}", **batch(args.rows, i)}) for i in range(3)]
    size = len(bodies[0])

    def post(i: int, body: str) -> float:
        body = body.replace('"idempotency_key": "b', f'"idempotency_key": "{i}-b', 1)
        t = time.perf_counter()
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 202, response.content
        return time.perf_counter() - t

    # 1. intake only: publishing is switched off, batches stay unfolded
    app.conf.task_always_eager = True
    from workers import tasks

    publish = tasks.fold_telemetry_batch.apply_async
    tasks.fold_telemetry_batch.apply_async = lambda *a, **k: None  # type: ignore[method-assign]
    post(-1, bodies[0])  # warm-up: the first request imports the URLconf and views
    intake = [post(i, bodies[i % 3]) for i in range(args.batches)]
    tasks.fold_telemetry_batch.apply_async = publish  # type: ignore[method-assign]
    # 2. fold only: half the backlog one batch at a time (fold_group with groups of one),
    # the other half as the fold tasks do it (the first folds its window's waiting batches
    # in groups, the rest find theirs done)
    ids = sorted(
        TelemetryBatch.objects.filter(deployment=dep, folded_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    group = services.FOLD_GROUP
    services.FOLD_GROUP = 1
    folds = []
    services.fold_group(ids.pop(0))  # the warm-up batch, untimed
    half = len(ids) // 2
    for pk in ids[:half]:
        t = time.perf_counter()
        services.fold_group(pk)
        folds.append(time.perf_counter() - t)
    services.FOLD_GROUP = group
    t = time.perf_counter()
    for pk in ids[half:]:
        services.fold_batch(pk)
    grouped = len(ids[half:]), time.perf_counter() - t
    # 3. end to end (eager fold on commit)
    both = [post(10_000 + i, bodies[i % 3]) for i in range(args.batches)]
    window = WindowProfile.objects.filter(deployment=dep).order_by("-start").first()
    assert window is not None
    total_rows = WindowProfile.objects.filter(deployment=dep).values_list("rows", flat=True)
    assert sum(total_rows) == (2 * args.batches + 1) * args.rows, "lost or doubled rows"
    print(f"PostgreSQL {connection.pg_version}; {args.batches} batches of {args.rows} rows")
    print(f"batch body: {size / 1024:.0f} KiB of JSON (4 features, predictions, latencies)")
    print("| step | batches/s | rows/s | p50 ms | p95 ms |")
    print("|---|---|---|---|---|")
    for name, times in (("intake (API)", intake), ("fold task", folds), ("API + fold", both)):
        total = sum(times)
        p50 = statistics.median(times) * 1000
        p95 = statistics.quantiles(times, n=20)[18] * 1000
        print(
            f"| {name} | {len(times) / total:,.1f} | {len(times) * args.rows / total:,.0f} "
            f"| {p50:.1f} | {p95:.1f} |"
        )
    print(
        f"| fold tasks, a backlog of {grouped[0]} | {grouped[0] / grouped[1]:,.1f} "
        f"| {grouped[0] * args.rows / grouped[1]:,.0f} | – | – |"
    )
    print(
        f"window profile: {len(json.dumps(window.profile)) / 1024:.0f} KiB JSON "
        f"({window.rows} rows in it)"
    )
    raw = raw_inserts(bodies, args.batches)
    print(f"raw PostgreSQL: {raw:,.1f} batches/s ({raw * args.rows:,.0f} rows/s)")
    figures = []
    for name, times in (
        ("intake (POST …/telemetry/)", intake),
        ("fold task, one batch per task", folds),
        ("API + fold (eager, one worker)", both),
    ):
        rate = len(times) * args.rows / sum(times)
        figures.append(
            figure(
                f"{name}, batches of {args.rows:,} rows",
                rate,
                "rows/s",
                peer="raw PostgreSQL: INSERT of the same JSON as jsonb, commit per batch",
                peer_value=raw * args.rows,
                note=f"p50 {statistics.median(times) * 1000:.1f} ms, "
                f"p95 {statistics.quantiles(times, n=20)[18] * 1000:.1f} ms per batch",
            )
        )
    figures.append(
        figure(
            f"fold tasks, a backlog of {grouped[0]} batches of {args.rows:,} rows, in groups",
            grouped[0] * args.rows / grouped[1],
            "rows/s",
            peer="raw PostgreSQL: INSERT of the same JSON as jsonb, commit per batch",
            peer_value=raw * args.rows,
            note=f"{grouped[1] * 1000 / grouped[0]:.1f} ms per batch; the row above folds one "
            "batch per task",
        )
    )
    figures.append(
        figure(
            "window profile size",
            len(json.dumps(window.profile)) / 1024,
            "KiB",
            note=f"{window.rows:,} rows folded into it",
        )
    )
    write_json(args, bench="telemetry", figures=figures, extra={"batch_kib": size / 1024})


def raw_inserts(bodies: list[str], n: int) -> float:
    """Batches/s for the bodies inserted as jsonb into a plain table (the peer)."""
    import psycopg

    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_batches")
        conn.execute("CREATE TABLE bench_raw_batches (key text UNIQUE, body jsonb)")
        t = time.perf_counter()
        for i in range(n):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO bench_raw_batches VALUES (%s, %s::jsonb)", [f"r{i}", bodies[i % 3]]
                )
        elapsed = time.perf_counter() - t
        conn.execute("DROP TABLE bench_raw_batches")
    return n / elapsed


if __name__ == "__main__":
    main()
