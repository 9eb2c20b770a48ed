"""Model-version registration latency: Charter (through its client) beside MLflow (issue 8).

    .venv/bin/python bench/registration_bench.py [--n 200] [--warmup 20] [--block 20]
        [--short] [--json PATH]

``--short``: 30 timed calls each after 5 warm-ups, in blocks of 10.

Starts, on this machine and the same PostgreSQL:

- Charter: ``gunicorn portal.wsgi`` with 2 sync workers on its own database
  ``charter_bench_reg`` (created and migrated here; audit on, as always), a service
  account with a token scoped to one use case;
- MLflow: ``mlflow server`` with 2 workers, backend store
  ``postgresql+psycopg://postgres@127.0.0.1:5432/mlflow_bench`` (dropped and recreated
  here), artifacts under ``var/bench/``, its job runner off
  (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: registration does not use it, and its idle
  consumers' polling would take CPU from both servers).

Then times, alternating blocks of ``--block`` calls between the three so that machine
noise hits them alike (after ``--warmup`` untimed calls each), ``--n`` calls of:

- ``charter_client.Client.register_model_version`` (model card field, metrics,
  parameters, a dataset link, code commit): one audited insert on the server;
- the same followed by ``Client.upload_artifact(..., key=…)``: the client hashes a 1 MiB
  file, signs an in-toto statement (Ed25519, DSSE), the server verifies the envelope and
  stores artifact + attestation (two audited inserts) — timed as one step, and the upload
  part alone;
- ``mlflow.MlflowClient().create_model_version(name, "runs:/<run>/model", run_id=…)``
  against the MLflow server (its default client, which waits until the version is READY).

Prints p50/p95/mean per measurement and writes ``var/bench/registration.json``, with the
SQL statements one Charter registration issues (counted in this process through the same
URL, token and ``Idempotency-Key``; transaction BEGIN/COMMIT not counted).

Fairness: both servers run 2 worker processes. MLflow's client keeps its HTTP connection
open (``requests.Session``); Charter's client opens one per call (``urllib``), and
gunicorn's sync workers close it after each answer, so Charter's figure includes a
loopback TCP connect per call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "client" / "src"))
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB = os.environ.setdefault("BENCH_DATABASE_NAME", "charter_bench_reg")
MLFLOW_DB = os.environ.get("BENCH_MLFLOW_DATABASE", "mlflow_bench")
os.environ.setdefault("DATABASE_URL", f"{PG}/{DB}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("CHARTER_VAR_DIR", str(ROOT / "var" / "bench"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
VAR = Path(os.environ["CHARTER_VAR_DIR"])
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


def prepare_charter() -> dict[str, Any]:
    """Migrate the bench database and build the fixture through the service layer."""
    if not database_exists(DB):
        admin_sql(f'CREATE DATABASE "{DB}"')
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from portal import roles
    from portal.permissions import Access
    from portal.services import grant_access, issue_token
    from registry import services
    from registry.models import Dataset, Model, UseCase

    call_command("migrate", verbosity=0)
    system = Access.system()
    use_case = UseCase.objects.filter(name="Registration bench").first()
    if use_case is None:
        use_case = services.create_use_case(
            system, name="Registration bench", purpose="Time registrations.", risk_tier="limited"
        )
    user_model = get_user_model()
    pipeline, created = user_model.objects.get_or_create(username="bench-pipeline")
    if created:
        pipeline.groups.add(Group.objects.get(name=roles.CONTRIBUTOR))
        grant_access(system, use_case, pipeline, "contribute")
    dataset = Dataset.objects.filter(use_case=use_case, name="applications").first()
    dataset = dataset or services.create_dataset(system, use_case=use_case, name="applications")
    run = uuid.uuid4().hex[:8]
    version = services.create_dataset_version(
        system, dataset=dataset, version=f"bench-{run}", sha256="0" * 64, row_count=1000
    )
    model = Model.objects.filter(use_case=use_case, name="scorer").first()
    model = model or services.create_model(system, use_case=use_case, name="scorer")
    _, token = issue_token(system, user=pipeline, name=f"bench {run}", use_cases=[use_case])
    from django.db import connections

    connections.close_all()
    return {"token": token, "model": model.pk, "dataset_version": version.pk, "run": run}


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}; see var/bench/*.log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f}s")


def start(cmd: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    VAR.mkdir(parents=True, exist_ok=True)
    out = open(VAR / log, "ab")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(q[94] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def main() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import parse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, help="timed calls per measurement (200)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (20)")
    parser.add_argument("--block", type=int, help="calls per alternating block (20)")
    args = parse(
        parser,
        full={"n": 200, "warmup": 20, "block": 20},
        short={"n": 30, "warmup": 5, "block": 10},
    )

    fixture = prepare_charter()
    admin_sql(
        f'DROP DATABASE IF EXISTS "{MLFLOW_DB}" WITH (FORCE)', f'CREATE DATABASE "{MLFLOW_DB}"'
    )
    charter_port, mlflow_port = free_port(), free_port()
    charter_env = {"DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1", "DATABASE_CONN_MAX_AGE": "60"}
    charter = start(
        [
            str(BIN / "gunicorn"),
            "portal.wsgi",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{charter_port}",
            "--access-logfile",
            "/dev/null",
        ],
        "charter-gunicorn.log",
        charter_env,
    )
    mlflow = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{MLFLOW_DB}",
            "--default-artifact-root",
            (VAR / "mlflow-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "2",
        ],
        "mlflow-server.log",
        # MLflow 3's server also starts a job runner (seven huey consumers) unless told not
        # to; idle, they poll and took ~28% of a core each here (2 cores), slowing both
        # contenders. Model registration does not use them.
        {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    try:
        wait_http(f"http://127.0.0.1:{charter_port}/login/", charter, "gunicorn")
        wait_http(f"http://127.0.0.1:{mlflow_port}/health", mlflow, "mlflow server", 240)
        results = measure(args, fixture, charter_port, mlflow_port)
    finally:
        stop(charter)
        stop(mlflow)
    out = VAR / "registration.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["summary"], indent=1))
    print(f"Charter statements per registration: {results['charter_statements_per_registration']}")
    print(f"written to {out}")
    write_figures(args, results)


def write_figures(args: Any, results: dict[str, Any]) -> None:
    from _common import figure, write_json

    summ = results["summary"]
    mlflow = summ["mlflow_create_model_version"]
    peer = f"MLflow {results['machine']['mlflow']} create_model_version"
    figures = []
    for key, label, target in (
        ("charter_register", "Charter register_model_version (client → gunicorn)", True),
        ("charter_register_signed_artifact", "Charter register + signed 1 MiB artifact", False),
    ):
        for stat in ("p50_ms", "p95_ms"):
            checked = target and stat == "p50_ms"
            ratio = summ[key][stat] / mlflow[stat]
            figures.append(
                figure(
                    f"{label}, {stat[:3]}",
                    summ[key][stat],
                    "ms",
                    target="p50 no slower than MLflow's" if checked else None,
                    ok=ratio <= 1.0 if checked else None,
                    peer=f"{peer}, {stat[:3]}",
                    peer_value=mlflow[stat],
                    ratio_text=f"{ratio:.2f}× MLflow's",
                )
            )
    artifact = summ["charter_signed_artifact_only"]
    figures.append(
        figure(
            "of which the signed artifact upload, p50",
            artifact["p50_ms"],
            "ms",
            note=f"p95 {artifact['p95_ms']} ms",
        )
    )
    write_json(args, bench="registration", figures=figures, extra=results)


def count_statements(fixture: dict[str, Any]) -> int:
    """SQL statements one registration issues, in this process through the real URL
    with the service account's token and an ``Idempotency-Key`` (as the client sends)."""
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext, override_settings

    body = {
        "model": fixture["model"],
        "version": f"{fixture['run']}-count",
        "metrics": {"auc": 0.91, "accuracy": 0.84},
        "parameters": {"lr": 0.1, "epochs": 20},
        "training_datasets": [fixture["dataset_version"]],
        "code_commit": "9fceb02",
        "intended_use": "Registration benchmark.",
    }
    client = DjangoClient()
    with override_settings(ALLOWED_HOSTS=["testserver"]), CaptureQueriesContext(connection) as ctx:
        response = client.post(
            "/api/v1/model-versions/",
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {fixture['token']}",
            HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
        )
    if response.status_code != 201:
        raise SystemExit(f"in-process registration failed: {response.status_code}")
    return sum(1 for q in ctx.captured_queries if q["sql"] not in ("BEGIN", "COMMIT"))


def measure(args: Any, fixture: dict[str, Any], charter_port: int, mlflow_port: int) -> Any:
    import mlflow
    from charter_client import Client, generate_key
    from mlflow import MlflowClient

    charter = Client(f"http://127.0.0.1:{charter_port}", fixture["token"], retries=0)
    private_pem, _ = generate_key()
    charter.register_signing_key(private_pem, f"bench {fixture['run']}")
    blob = VAR / "bench-model.bin"
    blob.write_bytes(os.urandom(1 << 20))

    tracking = f"http://127.0.0.1:{mlflow_port}"
    mlflow.set_tracking_uri(tracking)
    mlflow_client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    experiment = mlflow_client.create_experiment(f"bench-{fixture['run']}")
    run = mlflow_client.create_run(experiment)
    mlflow_client.log_batch(
        run.info.run_id,
        metrics=[mlflow.entities.Metric("auc", 0.9, int(time.time() * 1000), 0)],
        params=[mlflow.entities.Param("lr", "0.1")],
    )
    registered = f"bench-model-{fixture['run']}"
    mlflow_client.create_registered_model(registered)
    source = f"runs:/{run.info.run_id}/model"

    counter = iter(range(10**9))
    samples: dict[str, list[float]] = {
        "charter_register": [],
        "charter_register_signed_artifact": [],
        "charter_signed_artifact_only": [],
        "mlflow_create_model_version": [],
    }

    def register() -> dict[str, Any]:
        return charter.register_model_version(
            fixture["model"],
            f"{fixture['run']}-{next(counter)}",
            metrics={"auc": 0.91, "accuracy": 0.84},
            parameters={"lr": 0.1, "epochs": 20},
            training_datasets=[fixture["dataset_version"]],
            code_commit="9fceb02",
            intended_use="Registration benchmark.",
        )

    def charter_plain(timed: bool) -> None:
        t0 = time.perf_counter()
        register()
        if timed:
            samples["charter_register"].append(time.perf_counter() - t0)

    def charter_signed(timed: bool) -> None:
        t0 = time.perf_counter()
        version = register()
        t1 = time.perf_counter()
        artifact = charter.upload_artifact(
            version["id"], blob, "model.bin", "s3://bench/model.bin", key=private_pem
        )
        t2 = time.perf_counter()
        if artifact.get("signature_status") != "verified":
            raise SystemExit(f"artifact not verified: {artifact}")
        if timed:
            samples["charter_register_signed_artifact"].append(t2 - t0)
            samples["charter_signed_artifact_only"].append(t2 - t1)

    def mlflow_register(timed: bool) -> None:
        t0 = time.perf_counter()
        mlflow_client.create_model_version(registered, source, run_id=run.info.run_id)
        if timed:
            samples["mlflow_create_model_version"].append(time.perf_counter() - t0)

    contenders: list[Callable[[bool], None]] = [charter_plain, charter_signed, mlflow_register]
    for contender in contenders:
        for _ in range(args.warmup):
            contender(False)
    done = 0
    while done < args.n:
        size = min(args.block, args.n - done)
        for contender in contenders:
            for _ in range(size):
                contender(True)
        done += size
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "mlflow": mlflow.__version__,
        },
        "n": args.n,
        "summary": {name: summary(values) for name, values in samples.items()},
        "charter_statements_per_registration": count_statements(fixture),
    }


if __name__ == "__main__":
    main()
