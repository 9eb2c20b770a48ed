"""Lineage at scale (issue 5): graph queries on a realistic graph, and OpenLineage intake.

    .venv/bin/python bench/lineage_bench.py [--queries 20] [--single 400] [--batches 12]
        [--pipelines 40] [--short] [--json PATH]

``--short``: 4 pipelines per use case (a graph of about 10,000 nodes), 5 timed requests per
start, 4 clients posting 25 single events and 2 batches each, 2 gunicorn workers.

1. Builds, in its own database (``charter_lineage_bench``, dropped and re-created), a
   graph of about 100,000 nodes and 300,000 edges: 20 use cases × 40 pipelines, each a
   layered DAG of jobs (4 runs each) reading their previous stage and, often, shared
   datasets (Zipf-popular hubs every pipeline reads; shared sinks many pipelines
   write), with column lineage; each pipeline's final datasets are registry dataset
   versions that trained model versions (retrained, deployed, serving the use case).
   Registry rows are real (bulk-created); nodes and edges are loaded with COPY.
2. Queries through the API in-process (Django test client, full middleware, token-less
   session auth): depth-20 impact and downstream from the busiest shared datasets,
   depth-20 upstream from the busiest shared sinks and from deployments; as an
   administrator and as a contributor who sees one use case (placeholders for the
   rest). p50/p95 over ``--queries`` requests per start after warm-ups. Beside it, the
   same reach computed three ways: the level-by-level walk (what the API uses), one
   recursive CTE, and an in-memory networkx graph of the whole lineage.
3. Intake over HTTP: gunicorn (4 sync workers) on loopback, 8 client processes, each
   posting pre-serialised RunEvents (START/COMPLETE pairs on existing datasets, schema and
   column-lineage facets) one per request, then in batches of 50; every event is
   counted in the database afterwards. Beside it, raw PostgreSQL: the same JSON inserted
   by 8 psycopg connections into a plain table (unique SHA-256, jsonb), one commit per
   event and per 50 events.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.setdefault("BENCH_DATABASE_NAME", "charter_lineage_bench")
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("CHARTER_VAR_DIR", str(ROOT / "var" / "bench"))
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
PG = os.environ["DATABASE_URL"]
PORT = int(os.environ.get("BENCH_PORT", "0"))  # 0: a free port

USE_CASES, PIPELINES, STAGES, RUNS = 20, 40, 7, 4
SHARED_SOURCES, SHARED_SINKS = 300, 60


def recreate_database() -> None:
    import psycopg

    admin = PG.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [DB]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}"')
        conn.execute(f'CREATE DATABASE "{DB}"')


def setup_django() -> None:
    import django

    django.setup()


def say(*args: Any) -> None:
    print(*args, flush=True)


# ----------------------------------------------------------------- 1. the graph


class Graph:
    """Nodes and edges to COPY: nodes keyed by their public key."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[Any, ...]] = {}
        self.edges: set[tuple[str, str, str]] = set()
        self.column: dict[tuple[str, str], dict[str, Any]] = {}

    def node(self, kind: str, key: str, uc: int, **extra: Any) -> str:
        if key not in self.nodes:
            self.nodes[key] = (
                kind,
                key,
                hashlib.sha256(key.encode()).hexdigest(),
                extra.get("namespace", ""),
                extra.get("name", ""),
                extra.get("object_id"),
                extra.get("label", extra.get("name", key)),
                uc,
                extra.get("linked"),
                json.dumps(extra.get("attrs", {})),
                extra.get("valid_from"),
                extra.get("valid_to"),
            )
        return key

    def edge(self, src: str, dst: str, kind: str) -> None:
        self.edges.add((src, dst, kind))


def build_graph(rng: random.Random) -> tuple[Graph, dict[str, Any]]:
    """Registry rows (bulk, real) and the lineage graph (in memory, COPY later)."""
    from portal.permissions import Access
    from registry import services
    from registry.models import Dataset, DatasetVersion, Deployment, Model, ModelVersion

    g = Graph()
    system = Access.system()
    now = datetime.now(UTC)
    use_cases = [
        services.create_use_case(system, name=f"Use case {i:02d}", purpose="bench")
        for i in range(USE_CASES)
    ]
    uc_key = {uc.pk: f"use_case:{uc.pk}" for uc in use_cases}
    for uc in use_cases:
        g.node("use_case", uc_key[uc.pk], uc.pk, object_id=uc.pk, label=uc.name)
    # Shared sources (hubs, Zipf-popular) and shared sinks, owned round-robin.
    sources = [
        g.node(
            "dataset",
            f"dataset:postgres://dwh:5432:shared.source_{i}",
            use_cases[i % USE_CASES].pk,
            namespace="postgres://dwh:5432",
            name=f"shared.source_{i}",
            linked=False,
        )
        for i in range(SHARED_SOURCES)
    ]
    popularity = [1 / (i + 1) ** 1.1 for i in range(SHARED_SOURCES)]
    sinks = [
        g.node(
            "dataset",
            f"dataset:s3://metrics:sink_{i}",
            use_cases[i % USE_CASES].pk,
            namespace="s3://metrics",
            name=f"sink_{i}",
            linked=False,
        )
        for i in range(SHARED_SINKS)
    ]
    datasets, models = [], []
    for uc in use_cases:
        for p in range(PIPELINES):
            datasets.append(Dataset(use_case=uc, name=f"training-{p}"))
            models.append(Model(use_case=uc, name=f"model-{p}"))
    Dataset.objects.bulk_create(datasets)
    Model.objects.bulk_create(models)
    pipelines: list[dict[str, Any]] = []
    for i, uc in enumerate(use_cases):
        for p in range(PIPELINES):
            pipelines.append(
                {"uc": uc, "p": p, "dataset": datasets[i * PIPELINES + p],
                 "model": models[i * PIPELINES + p]}
            )  # fmt: skip
    finals: list[list[str]] = []
    for pl in pipelines:
        uc, p = pl["uc"].pk, pl["p"]
        ns = f"s3://uc{uc}-lake"
        prev = [
            g.node("dataset", f"dataset:{ns}:p{p}/raw_{k}", uc, namespace=ns, name=f"p{p}/raw_{k}",
                   linked=False)
            for k in range(2)
        ]  # fmt: skip
        for stage in range(1, STAGES + 1):
            produced = []
            for j in range(rng.choice((2, 3, 3))):
                job_name = f"p{p}.stage{stage}.job{j}"
                job = g.node("job", f"job:airflow-uc{uc}:{job_name}", uc,
                             namespace=f"airflow-uc{uc}", name=job_name)  # fmt: skip
                inputs = rng.sample(prev, min(len(prev), rng.choice((1, 2, 2))))
                if rng.random() < 0.35:
                    inputs.append(rng.choices(sources, popularity)[0])
                outputs = [
                    g.node("dataset", f"dataset:{ns}:p{p}/s{stage}_{j}_{k}", uc, namespace=ns,
                           name=f"p{p}/s{stage}_{j}_{k}", linked=False)
                    for k in range(rng.choice((1, 1, 2)))
                ]  # fmt: skip
                if rng.random() < 0.08:
                    outputs.append(rng.choice(sinks))
                for r in range(RUNS):
                    run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                    start = now - timedelta(days=RUNS - r, minutes=stage * 10)
                    run = g.node("run", f"run:{run_id}", uc, name=run_id, label=f"{job_name} run",
                                 valid_from=start, valid_to=start + timedelta(minutes=9),
                                 attrs={"state": "COMPLETE"})  # fmt: skip
                    g.edge(job, run, "run_of")
                    for d in inputs:
                        g.edge(d, run, "input")
                    for d in outputs:
                        g.edge(run, d, "output")
                for d in outputs:
                    for src in inputs:
                        if rng.random() < 0.5:
                            g.edge(src, d, "column")
                            g.column[(src, d)] = {"fields": {"value": [{"field": "value"}]}}
                produced += [d for d in outputs if not d.startswith("dataset:s3://metrics")]
            prev = produced
        finals.append(prev)
    # Registry: each pipeline's final datasets are dataset versions; two model versions
    # (the second retrained from the first) trained on them; the first deployment of each
    # was replaced by the second.
    versions = []
    for pl, final in zip(pipelines, finals, strict=True):
        for k, _ in enumerate(final[:2]):
            digest = f"{rng.getrandbits(256):064x}"
            versions.append(DatasetVersion(dataset=pl["dataset"], use_case=pl["uc"],
                                           version=f"v{k}", sha256=digest))  # fmt: skip
    DatasetVersion.objects.bulk_create(versions)
    by_pipeline: dict[int, list[Any]] = {}
    for dv in versions:
        by_pipeline.setdefault(dv.dataset_id, []).append(dv)
    mvs = []
    for pl in pipelines:
        for v in ("1.0", "1.1"):
            mvs.append(ModelVersion(model=pl["model"], use_case=pl["uc"], version=v))
    ModelVersion.objects.bulk_create(mvs)
    deployments = []
    for n, pl in enumerate(pipelines):
        for m in (0, 1):
            deployments.append(
                Deployment(model_version=mvs[2 * n + m], use_case=pl["uc"],
                           environment="production", released_at=now - timedelta(days=10 - m),
                           status="replaced" if m == 0 else "active")
            )  # fmt: skip
    Deployment.objects.bulk_create(deployments)
    for n, (pl, final) in enumerate(zip(pipelines, finals, strict=True)):
        uc = pl["uc"].pk
        dvs = by_pipeline[pl["dataset"].pk]
        dv_keys = []
        for dv, ol in zip(dvs, final, strict=False):
            key = g.node("dataset_version", f"dataset_version:{dv.pk}", uc, object_id=dv.pk,
                         label=f"training-{pl['p']}@{dv.version}")  # fmt: skip
            g.edge(ol, key, "version")
            dv_keys.append(key)
        mv_keys = []
        for m in (0, 1):
            mv = mvs[2 * n + m]
            key = g.node("model_version", f"model_version:{mv.pk}", uc, object_id=mv.pk,
                         label=f"model-{pl['p']}@{mv.version}")  # fmt: skip
            mv_keys.append(key)
            for dv_key in dv_keys:
                g.edge(dv_key, key, "trained_on")
            dep = deployments[2 * n + m]
            live = [
                [
                    dep.released_at.isoformat(),
                    None if m else (dep.released_at + timedelta(days=1)).isoformat(),
                ]
            ]
            dep_key = g.node("deployment", f"deployment:{dep.pk}", uc, object_id=dep.pk,
                             label=f"model-{pl['p']}@{mv.version} → production",
                             attrs={"environment": "production", "live": live},
                             valid_from=dep.released_at,
                             valid_to=None if m else dep.released_at + timedelta(days=1),
                             )  # fmt: skip
            g.edge(key, dep_key, "deployed_as")
            g.edge(dep_key, uc_key[uc], "serves")
        g.edge(mv_keys[0], mv_keys[1], "retrained_from")
    info = {
        "use_cases": use_cases,
        "sources": sources[:5],
        "sinks": sinks,
        "deployments": [f"deployment:{d.pk}" for d in deployments if d.status == "active"],
    }
    return g, info


def load_graph(g: Graph) -> dict[str, int]:
    import psycopg

    now = datetime.now(UTC)
    with psycopg.connect(PG) as conn:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM lineage_lineageedge")
            cur.execute("DELETE FROM lineage_lineagenode")
            with cur.copy(
                "COPY lineage_lineagenode (kind, key, key_hash, namespace, name, object_id, "
                "label, use_case_id, linked, attrs, valid_from, valid_to, created_at, updated_at) "
                "FROM STDIN"
            ) as copy:
                for row in g.nodes.values():
                    copy.write_row((*row, now, now))
            cur.execute("SELECT key, id FROM lineage_lineagenode")
            ids = dict(cur.fetchall())
            with cur.copy(
                "COPY lineage_lineageedge (src_id, dst_id, kind, detail, source, created_at) "
                "FROM STDIN"
            ) as copy:
                for src, dst, kind in g.edges:
                    detail = g.column.get((src, dst), {}) if kind == "column" else {}
                    source = "registry" if kind in REGISTRY_EDGES else "openlineage"
                    copy.write_row((ids[src], ids[dst], kind, json.dumps(detail), source, now))
        conn.commit()
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE lineage_lineagenode")
        conn.execute("VACUUM ANALYZE lineage_lineageedge")
    return ids


REGISTRY_EDGES = {"trained_on", "deployed_as", "serves", "retrained_from"}


# ----------------------------------------------------------------- 2. queries


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def busiest(kind_sql: str, column: str, limit: int = 5, use_case: int | None = None) -> list[str]:
    from django.db import connection

    scope = "AND n.use_case_id = %s" if use_case else ""
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT n.key FROM lineage_lineageedge e JOIN lineage_lineagenode n ON n.id = e.{column} "  # noqa: E501
            f"WHERE {kind_sql} AND e.removed_at IS NULL {scope} GROUP BY n.key "
            "ORDER BY count(*) DESC LIMIT %s",
            [*([use_case] if use_case else []), limit],
        )
        return [r[0] for r in cur.fetchall()]


def time_queries(plan: dict[str, tuple[Any, dict[str, Any]]], n: int) -> list[dict]:
    from django.test import Client

    rows = []
    for who, (user, starts) in plan.items():
        client = Client()
        client.force_login(user)
        for label, (url, nodes, *extra) in starts.items():
            params = extra[0] if extra else {}
            times: list[float] = []
            sizes: list[int] = []
            per_start: list[float] = []
            for node in nodes:
                mark = len(times)
                for i in range(n + 3):
                    t0 = time.perf_counter()
                    response = client.get(url, {"nodeId": node, "depth": 20, **params})
                    elapsed = (time.perf_counter() - t0) * 1000
                    assert response.status_code == 200, (url, node, response.content[:300])
                    if i >= 3:
                        times.append(elapsed)
                    if i == 0:
                        data = response.json()
                        sizes.append(
                            len(data.get("nodes", [])) or sum(data.get("counts", {}).values())
                        )
                per_start.append(round(pct(times[mark:], 0.5), 1))
            rows.append({"user": who, "query": label, "p50": pct(times, 0.5),
                         "p95": pct(times, 0.95), "reached": sizes, "n": len(times),
                         "p50_per_start": per_start})  # fmt: skip
            say(f"  {who:12s} {label:40s} p50 {rows[-1]['p50']:7.1f} ms  p95 "
                f"{rows[-1]['p95']:7.1f} ms  reached {sizes}  "
                f"p50 per start {per_start}")  # fmt: skip
    return rows


CTE = """
WITH RECURSIVE reach(id) AS (
    SELECT %s::bigint
    UNION
    SELECT e.dst_id FROM reach r JOIN lineage_lineageedge e ON e.src_id = r.id
    WHERE e.removed_at IS NULL AND e.kind = ANY(%s)
)
SELECT count(*) FROM reach
"""


def rss_mb() -> float:
    """Current resident memory of this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def strategies(starts: list[str], n: int) -> list[dict[str, Any]]:
    """Downstream reach (depth 20) from the same starts, four ways."""
    import networkx as nx
    from django.db import connection

    from lineage import cache, graph
    from lineage.models import FLOW_KINDS, LineageNode

    ids = [LineageNode.objects.get(key=k).pk for k in starts]
    cache.reset()
    t0 = time.perf_counter()
    flow = cache.current()
    cache_load = time.perf_counter() - t0
    cache_mb = cache.stats()["bytes"] / 2**20

    def sql_walk(node: int) -> int:
        return len(graph.walk([node], "down", 20, max_nodes=10**7).depth)

    def cte(node: int) -> int:
        with connection.cursor() as cur:
            cur.execute(CTE, [node, list(FLOW_KINDS)])
            return cur.fetchone()[0]

    def in_memory(node: int) -> int:
        found = flow.walk([node], "down", 20, FLOW_KINDS, max_nodes=10**7, with_edges=False)
        return len(found.ids)

    rss0 = rss_mb()
    t0 = time.perf_counter()
    g = nx.DiGraph()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT src_id, dst_id FROM lineage_lineageedge "
            "WHERE removed_at IS NULL AND kind = ANY(%s)",
            [list(FLOW_KINDS)],
        )
        g.add_edges_from(cur.fetchall())
    nx_load = time.perf_counter() - t0
    nx_mb = rss_mb() - rss0

    def networkx(node: int) -> int:
        return len(nx.single_source_shortest_path_length(g, node, cutoff=20))

    out = []
    for label, fn, extra in (
        ("SQL level walk", sql_walk, ""),
        ("SQL recursive CTE (closure)", cte, ""),
        ("in-memory CSR (numpy)", in_memory, f"load {cache_load:.1f} s, {cache_mb:.1f} MB"),
        ("in-memory networkx", networkx, f"load {nx_load:.1f} s, +{nx_mb:.0f} MB RSS"),
    ):
        times, sizes = [], []
        for node in ids:
            for i in range(n + 2):
                t0 = time.perf_counter()
                size = fn(node)
                if i >= 2:
                    times.append((time.perf_counter() - t0) * 1000)
            sizes.append(size)
        out.append({"how": label, "p50": pct(times, 0.5), "p95": pct(times, 0.95),
                    "sizes": sizes, "note": extra})  # fmt: skip
        say(f"  {label:28s} p50 {out[-1]['p50']:7.1f} ms  p95 {out[-1]['p95']:7.1f} ms  "
            f"reach {sizes} {extra}")  # fmt: skip
    return out


# ----------------------------------------------------------------- 3. intake


def make_events(count: int, seed: int, datasets: list[tuple[str, str]]) -> list[str]:
    """START/COMPLETE pairs on existing datasets, serialised once (client CPU stays low)."""
    rng = random.Random(seed)
    out = []
    producer = "https://github.com/example/airflow/tree/v2"
    while len(out) < count:
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        job = f"bench.job{rng.randrange(2000)}"
        ins = rng.sample(datasets, 3)
        outs = [("s3://bench-out", f"table_{rng.randrange(5000)}")]
        for state in ("START", "COMPLETE"):
            event = {
                "eventType": state,
                "eventTime": datetime.now(UTC).isoformat(),
                "producer": producer,
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                "run": {"runId": run_id, "facets": {}},
                "job": {"namespace": "airflow-bench", "name": job, "facets": {}},
                "inputs": [
                    {"namespace": ns, "name": name, "facets": {"schema": {
                        "_producer": producer,
                        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
                        "fields": [{"name": "id", "type": "bigint"}, {"name": "value", "type": "double"}]}}}  # noqa: E501
                    for ns, name in ins
                ],
                "outputs": [
                    {"namespace": ns, "name": name, "facets": {"columnLineage": {
                        "_producer": producer,
                        "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
                        "fields": {"value": {"inputFields": [
                            {"namespace": ins[0][0], "name": ins[0][1], "field": "value"}]}}}}}
                    for ns, name in outs
                ],
            }  # fmt: skip
            out.append(json.dumps(event))
    return out[:count]


def _client(url: str, token: str, bodies: list[str], start: Any, out: Any) -> None:
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    start.wait()
    t0 = time.perf_counter()
    failures = 0
    for body in bodies:
        for _ in range(5):
            response = session.post(url, data=body, headers=headers, timeout=60)
            if response.status_code < 500:
                break
            failures += 1
        if response.status_code not in (200, 201):
            failures += 1000
            print("refused:", response.status_code, response.text[:300], flush=True)
    out.put((time.perf_counter() - t0, failures))


def drive(url: str, token: str, per_client: list[list[str]]) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(len(per_client) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(url, token, b, start, out)) for b in per_client]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return wall, sum(r[1] for r in results)


def _raw_writer(bodies: list[str], batch: int, start: Any, out: Any) -> None:
    import psycopg

    with psycopg.connect(PG, autocommit=batch == 1) as conn:
        start.wait()
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(bodies), batch):
                chunk = bodies[i : i + batch]
                rows = [(hashlib.sha256(b.encode()).hexdigest(), b) for b in chunk]
                if batch == 1:
                    cur.execute("INSERT INTO bench_raw_events VALUES (%s, %s::jsonb)", rows[0])
                else:
                    cur.executemany("INSERT INTO bench_raw_events VALUES (%s, %s::jsonb)", rows)
                    conn.commit()
        out.put(time.perf_counter() - t0)


def raw_inserts(per_client: list[list[str]], batch: int) -> float:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_events")
        conn.execute("CREATE TABLE bench_raw_events (sha256 text UNIQUE, payload jsonb)")
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(len(per_client) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_raw_writer, args=(b, batch, start, out)) for b in per_client]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for _ in procs:
        out.get()
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return sum(len(b) for b in per_client) / wall


def start_server(workers: int) -> subprocess.Popen:
    import socket

    import requests

    global PORT
    if not PORT:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            PORT = s.getsockname()[1]
    env = {**os.environ, "DEBUG": "false"}
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "portal.wsgi:application", "-w", str(workers),
         "-b", f"127.0.0.1:{PORT}", "--log-level", "warning", "--timeout", "120"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    for _ in range(120):
        try:
            requests.get(f"http://127.0.0.1:{PORT}/login/", timeout=5)
            return server
        except requests.RequestException:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("gunicorn did not start")


# ----------------------------------------------------------------- main


def main() -> None:
    global PIPELINES
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import parse

    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, help="timed requests per start (20)")
    parser.add_argument("--single", type=int, help="single POSTs per client (400)")
    parser.add_argument("--batches", type=int, help="batches of 50 per client (12)")
    parser.add_argument("--clients", type=int, help="client processes (8)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (4)")
    parser.add_argument("--pipelines", type=int, help="pipelines per use case (40: ~100k nodes)")
    args = parse(
        parser,
        full={
            "queries": 20, "single": 400, "batches": 12, "clients": 8, "workers": 4,
            "pipelines": PIPELINES,
        },
        short={
            "queries": 5, "single": 25, "batches": 2, "clients": 4, "workers": 2,
            "pipelines": 4,
        },
    )  # fmt: skip
    PIPELINES = args.pipelines
    t_start = time.perf_counter()
    say(f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}")
    recreate_database()
    setup_django()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection

    from lineage.models import LineageEdge, LineageEvent, LineageNode
    from portal import roles
    from portal.permissions import Access
    from portal.services import create_service_account, grant_access, issue_token

    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        say("PostgreSQL", cur.fetchone()[0])
    rng = random.Random(20261202)
    t0 = time.perf_counter()
    g, info = build_graph(rng)
    load_graph(g)
    nodes, edges = LineageNode.objects.count(), LineageEdge.objects.count()
    say(f"graph: {nodes} nodes, {edges} edges (built and loaded in "
        f"{time.perf_counter() - t0:.0f} s)")  # fmt: skip

    # -- queries
    User = get_user_model()
    admin = User.objects.create_user("bench_admin")
    admin.groups.add(Group.objects.get(name=roles.ADMIN))
    contributor = User.objects.create_user("bench_contributor")
    grant_access(Access.system(), info["use_cases"][0], contributor, "contribute")

    def starts_for(use_case: int | None) -> dict[str, tuple[str, list[str]]]:
        hubs = busiest("e.kind = 'input'", "src_id", use_case=use_case)
        sinks = busiest(
            "e.kind = 'output' AND n.namespace = 's3://metrics'", "dst_id", use_case=use_case
        )
        deps = busiest("e.kind = 'deployed_as'", "dst_id", limit=50, use_case=use_case)
        return {
            "impact from busiest shared datasets": ("/api/v1/lineage/impact", hubs),
            # the API pages each kind's list (limit 250 by default); the whole answer too
            "impact from busiest shared datasets, whole answer": (
                "/api/v1/lineage/impact",
                hubs,
                {"limit": 100_000},
            ),
            "upstream from busiest shared sinks": ("/api/v1/lineage/upstream", sinks),
            "upstream from deployments": ("/api/v1/lineage/upstream", rng.sample(deps, 5)),
            "downstream from busiest shared datasets": ("/api/v1/lineage/downstream", hubs),
        }

    admin_starts = starts_for(None)
    plan = {
        "admin": (admin, admin_starts),
        "contributor": (contributor, starts_for(info["use_cases"][0].pk)),
    }
    say("queries (depth 20, in-process API, in-memory graph):")
    query_rows = time_queries(plan, args.queries)
    hubs = admin_starts["impact from busiest shared datasets"][1]
    say("reach strategies (downstream, depth 20, from the busiest shared datasets):")
    strategy_rows = strategies(hubs, max(5, args.queries // 2))

    # -- intake
    account = create_service_account(Access.system(), username="bench_pipeline")
    grant_access(Access.system(), info["use_cases"][1], account.user, "contribute")
    _, token = issue_token(
        Access.system(), user=account.user, name="bench", use_cases=[info["use_cases"][1]]
    )

    def split(key: str) -> tuple[str, str]:
        namespace, name = key.removeprefix("dataset:").rsplit(":", 1)
        return namespace, name

    keys = LineageNode.objects.filter(kind="dataset").values_list("key", flat=True)[:3000]
    pool = [split(k) for k in keys] + [split(k) for k in hubs] * 50
    clients = args.clients
    singles = make_events(clients * args.single, 1, pool)
    batched = make_events(clients * args.batches * 50, 2, pool)
    server = start_server(args.workers)
    try:
        url = f"http://127.0.0.1:{PORT}/api/v1/lineage"
        before = LineageEvent.objects.count()
        wall, failures = drive(url, token, [singles[i::clients] for i in range(clients)])
        stored_single = LineageEvent.objects.count() - before
        single_rate = len(singles) / wall
        say(f"intake, one event per POST: {len(singles)} events in {wall:.1f} s = "
            f"{single_rate:.0f} events/s; stored {stored_single}; failures {failures}")  # fmt: skip
        bodies = ["[" + ",".join(batched[i : i + 50]) + "]" for i in range(0, len(batched), 50)]
        before = LineageEvent.objects.count()
        wall, failures_b = drive(
            url + "/batch", token, [bodies[i::clients] for i in range(clients)]
        )
        stored_batch = LineageEvent.objects.count() - before
        batch_rate = len(batched) / wall
        say(f"intake, batches of 50: {len(batched)} events in {wall:.1f} s = "
            f"{batch_rate:.0f} events/s; stored {stored_batch}; failures {failures_b}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    raw_single = raw_inserts([singles[i::clients] for i in range(clients)], 1)
    raw_batch = raw_inserts([batched[i::clients] for i in range(clients)], 50)
    say(f"raw PostgreSQL INSERT ({clients} connections): one commit per event {raw_single:.0f}/s, "
        f"per 50 events {raw_batch:.0f}/s")  # fmt: skip
    say(
        f"ratios: API/raw single {single_rate / raw_single:.2f}, batch {batch_rate / raw_batch:.2f}"
    )
    say(f"total bench time {time.perf_counter() - t_start:.0f} s")
    result = {
        "nodes": nodes, "edges": edges, "queries": query_rows, "strategies": strategy_rows,
        "intake": {"single": [len(singles), single_rate, stored_single, failures],
                   "batch": [len(batched), batch_rate, stored_batch, failures_b],
                   "raw_single": raw_single, "raw_batch": raw_batch},
    }  # fmt: skip
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "lineage_bench.json").write_text(json.dumps(result, indent=1, default=str))
    write_figures(args, result)


QUERY_P95_MS, INTAKE_PER_S = 100.0, 500.0


def write_figures(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from _common import figure, write_json

    full_size = result["nodes"] >= 100_000
    figures = [
        figure(
            "graph size",
            result["nodes"],
            "nodes",
            target="≈ 100,000 nodes" if not args.short else None,
            ok=full_size if not args.short else None,
            note=f"{result['edges']:,} edges",
        )
    ]
    for row in result["queries"]:
        timed = not row["query"].startswith("downstream")
        figures.append(
            figure(
                f"{row['user']}: {row['query']} (depth 20), p95",
                row["p95"],
                "ms",
                target=f"< {QUERY_P95_MS:.0f} ms" if timed else None,
                ok=row["p95"] < QUERY_P95_MS if timed else None,
                note=f"p50 {row['p50']:.1f} ms; reached {min(row['reached']):,}–"
                f"{max(row['reached']):,} nodes",
            )
        )
    cte = next(r for r in result["strategies"] if "CTE" in r["how"])
    for row in result["strategies"]:
        if row is cte:
            continue
        figures.append(
            figure(
                f"downstream reach from the busiest datasets: {row['how']}, p50",
                row["p50"],
                "ms",
                peer="SQL recursive CTE (closure), p50",
                peer_value=cte["p50"],
                note=f"p95 {row['p95']:.1f} ms (CTE {cte['p95']:.1f} ms)"
                + (f"; {row['note']}" if row["note"] else ""),
            )
        )
    intake = result["intake"]
    for key, label, raw in (
        ("single", "one event per POST", intake["raw_single"]),
        ("batch", "batches of 50 (/api/v1/lineage/batch)", intake["raw_batch"]),
    ):
        sent, rate, stored, failures = intake[key]
        figures.append(
            figure(
                f"OpenLineage intake over HTTP, {label}, {args.clients} clients",
                rate,
                "events/s",
                target=f"≥ {INTAKE_PER_S:.0f} events/s",
                ok=rate >= INTAKE_PER_S,
                peer="raw PostgreSQL INSERT of the same JSON, same commits",
                peer_value=raw,
                note=f"stored {stored:,} of {sent:,} sent; {failures} failures",
            )
        )
        figures.append(
            figure(
                f"events stored, {label}",
                stored,
                "events",
                target=f"= {sent:,} sent, none lost or doubled",
                ok=stored == sent and failures == 0,
            )
        )
    write_json(args, bench="lineage", figures=figures)


if __name__ == "__main__":
    main()
