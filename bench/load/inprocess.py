"""CPU cost of the load's requests and of the telemetry fold, measured in-process.

The load test (run.py) says how much CPU each server used per request; this says which
request or task costs what, without HTTP, gunicorn or locust in the way: Django's test client
posts the load's requests against a database the load runner seeded and kept
(``run.py --keep-db``), and the Celery task that folds a telemetry batch is called directly.
Each figure is the CPU time of this thread (``time.thread_time``) per call — per batch for
the fold, whose tasks fold the batches in groups as the worker does — so PostgreSQL's share
is not in it; ``postgresql_ms`` is that share, the CPU the connection's backend used per
call (read from ``/proc``).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/charter_load_... \\
        python bench/load/inprocess.py --fixture var/load/<ts>/fixture.json [--n 200] \\
        [--profile fold|telemetry|lineage]

``--profile`` prints cProfile's top functions for that kind. The fold publishes nothing: the
telemetry posts' tasks go to ``--broker`` (a scratch Redis database, purged afterwards) and
the batches are folded here.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def _telemetry_body(rng: random.Random, regions: list[str], rows: int) -> dict[str, Any]:
    """A batch like the locustfile's (same distributions)."""
    return {
        "idempotency_key": f"inproc-{uuid.uuid4().hex}",
        "timestamp": datetime.now(UTC).isoformat(),
        "features": {
            "applicant_age": [
                float(round(min(90, max(18, rng.gauss(41, 12))))) for _ in range(rows)
            ],
            "income": [round(rng.lognormvariate(10.4, 0.45), 2) for _ in range(rows)],
            "region": [rng.choice(regions) for _ in range(rows)],
            "tenure_months": [
                float(round(min(480, rng.gammavariate(2.0, 30.0)))) for _ in range(rows)
            ],
        },
        "predictions": [round(rng.random(), 4) for _ in range(rows)],
        "latency_ms": [round(rng.gammavariate(3.0, 14.0), 2) for _ in range(rows)],
    }


def _lineage_body(uc: int, n: int) -> dict[str, Any]:
    run = str(uuid.uuid4())
    return {
        "eventType": "COMPLETE",
        "eventTime": datetime.now(UTC).isoformat(),
        "producer": "https://example.org/inprocess",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run},
        "job": {"namespace": "inprocess", "name": f"uc{uc}.job_{n % 7}"},
        "inputs": [{"namespace": "inprocess", "name": f"uc{uc}.raw_{k}"} for k in range(2)],
        "outputs": [{"namespace": "inprocess", "name": f"uc{uc}.clean"}],
    }


def _backend_cpu_s() -> float | None:
    """CPU seconds this thread's PostgreSQL backend has used (it runs on this machine)."""
    from django.db import connection

    connection.ensure_connection()
    try:
        with open(f"/proc/{connection.connection.info.backend_pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(label: str, calls: list[Callable[[], Any]], profile: bool) -> dict[str, float]:
    prof = cProfile.Profile() if profile else None
    costs = []
    pg_before = _backend_cpu_s()
    for call in calls:
        t0 = time.thread_time()
        if prof:
            prof.enable()
        call()
        if prof:
            prof.disable()
        costs.append((time.thread_time() - t0) * 1000)
    pg_after = _backend_cpu_s()
    figures = {
        "n": len(costs),
        "mean_ms": round(statistics.fmean(costs), 2),
        "median_ms": round(statistics.median(costs), 2),
    }
    if pg_before is not None and pg_after is not None and pg_after >= pg_before:
        # the same backend throughout (ticks of 10 ms: meaningful over many calls)
        figures["postgresql_ms"] = round((pg_after - pg_before) * 1000 / len(costs), 2)
    print(f"{label:12s} {json.dumps(figures)}")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return figures


def _show_queries(call: Callable[[], Any], label: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        call()
    print(f"-- {label}: {len(ctx.captured_queries)} round trips")
    for q in ctx.captured_queries:
        print("   ", q["sql"][:300].replace("\n", " "))


def _page_paths(fixture: dict[str, Any], rng: random.Random) -> dict[str, Callable[[], str]]:
    """The locustfile's board pages, each a function giving a path (same random choices)."""
    ucs = fixture["use_cases"]

    def mv() -> int:
        return rng.choice(rng.choice(ucs)["model_versions"])

    return {
        "dashboard": lambda: "/",
        "use_cases": lambda: "/use-cases/",
        "use_case": lambda: f"/use-cases/{rng.choice(ucs)['id']}/",
        "models": lambda: "/models/",
        "model_version": lambda: f"/models/versions/{mv()}/",
        "monitoring": lambda: f"/deployments/{rng.choice(ucs)['deployment']}/monitoring/",
        "lineage": lambda: f"/lineage/?node=model_version:{mv()}&depth=3",
        "audit_trail": lambda: "/audit/",
    }


def _pages(a: argparse.Namespace, fixture: dict[str, Any], rng: random.Random) -> None:
    """CPU per board page, as a board member of the fixture sees it (session login)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client(raise_request_exception=True)
    client.force_login(get_user_model().objects.get(username=fixture["board"][0]["username"]))

    def get(path: str) -> Callable[[], Any]:
        def call() -> None:
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code)

        return call

    for name, path in _page_paths(fixture, rng).items():
        _measure(name, [get(path()) for _ in range(3)], False)  # warm-up
        _measure(name, [get(path()) for _ in range(a.n)], a.profile == name)
        if a.queries:
            _show_queries(get(path()), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixture", required=True, type=Path)
    parser.add_argument("--n", type=int, default=200, help="calls per kind")
    parser.add_argument("--rows", type=int, default=50, help="rows per telemetry batch")
    parser.add_argument(
        "--profile",
        help="fold, telemetry, lineage, or a board page's name (dashboard, use_cases, ...)",
    )
    parser.add_argument(
        "--pages", action="store_true", help="measure the board members' pages instead"
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--queries", action="store_true", help="print the SQL one call of each kind sends"
    )
    a = parser.parse_args()
    os.environ["CELERY_BROKER_URL"] = a.broker

    import django

    django.setup()
    from django.test import Client

    from workers.models import TelemetryBatch
    from workers.services import fold_batch

    fixture = json.loads(a.fixture.read_text())
    rng = random.Random(5)
    client = Client(raise_request_exception=True)
    ucs = fixture["use_cases"]

    def post(path: str, body: dict[str, Any], token: str) -> Callable[[], Any]:
        data = json.dumps(body)

        def call() -> None:
            r = client.post(
                path,
                data,
                content_type="application/json",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": body.get("idempotency_key", str(uuid.uuid4())),
                },
            )
            assert r.status_code in (200, 201, 202), (r.status_code, r.content[:300])

        return call

    def telemetry(i: int) -> Callable[[], Any]:
        uc = ucs[i % len(ucs)]
        body = _telemetry_body(rng, fixture["regions"], a.rows)
        return post(f"/api/v1/deployments/{uc['deployment']}/telemetry/", body, uc["fleet_token"])

    def lineage(i: int) -> Callable[[], Any]:
        uc = ucs[i % len(ucs)]
        return post("/api/v1/lineage", _lineage_body(uc["id"], i), uc["pipeline_token"])

    if a.pages:
        _pages(a, fixture, rng)
        return

    # warm every path once (imports, prepared statements, caches), then measure
    for warm in range(2):
        n = 3 if warm == 0 else a.n
        first = TelemetryBatch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        _measure(
            "telemetry", [telemetry(i) for i in range(n)], warm == 1 and a.profile == "telemetry"
        )
        _measure("lineage", [lineage(i) for i in range(n)], warm == 1 and a.profile == "lineage")
        # one task per batch, as the worker gets them: the first of a window folds the
        # window's waiting batches, the rest find theirs folded (the figure is per batch)
        ids = list(
            TelemetryBatch.objects.filter(pk__gt=first, folded_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        _measure(
            "fold", [lambda pk=pk: fold_batch(pk) for pk in ids], warm == 1 and a.profile == "fold"
        )
        if warm == 0:
            print("-- (warm-up above)")
            if a.queries:
                _show_queries(telemetry(0), "telemetry")
                _show_queries(lineage(n), "lineage")

    import redis

    redis.Redis.from_url(a.broker).flushdb()


if __name__ == "__main__":
    main()
