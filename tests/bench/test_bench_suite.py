"""The benchmark suite's one command: bench/run.py runs benches, collects figures, renders.

Runs two fast benches for real (their own databases on the test PostgreSQL, dropped
afterwards) in short mode, into a temporary folder: the real bench/RESULTS.md is not touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def load_run() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def database_exists(name: str) -> bool:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        return row is not None


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    out, md = tmp / "results.json", tmp / "RESULTS.md"
    results_md = ROOT / "bench" / "RESULTS.md"
    before = results_md.read_bytes() if results_md.exists() else None
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--short", "--only", "approvals,telemetry",
         "--out", str(out), "--results-md", str(md)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = results_md.read_bytes() if results_md.exists() else None
    return {
        "results": json.loads(out.read_text()),
        "markdown": md.read_text(),
        "seconds": seconds,
        "results_md_untouched": before == after,
        "out": out,
        "tmp": tmp,
    }


def test_short_run_collects_figures_with_targets_and_peers(suite: dict) -> None:
    results = suite["results"]
    assert results["mode"] == "short"
    assert set(results["benches"]) == {"approvals", "telemetry"}
    approvals = results["benches"]["approvals"]
    assert approvals["status"] == "ok"
    by_name = {f["name"]: f for f in approvals["figures"]}
    page = by_name["review page GET /approvals/<id>/ p95"]
    assert page["unit"] == "ms" and page["value"] > 0
    assert page["target"] == "< 200 ms"
    assert page["verdict"] == ("pass" if page["value"] < 200 else "miss")
    policy = next(f for n, f in by_name.items() if n.startswith("policy evaluation"))
    assert policy["target"] == "< 20 ms"
    assert policy["verdict"] in ("pass", "miss")
    telemetry = results["benches"]["telemetry"]
    assert telemetry["status"] == "ok"
    intake = next(f for f in telemetry["figures"] if f["name"].startswith("intake"))
    assert intake["unit"] == "rows/s" and intake["value"] > 0
    assert intake["peer"].startswith("raw PostgreSQL") and intake["peer_value"] > 0
    assert intake["ratio"] == pytest.approx(intake["value"] / intake["peer_value"])
    assert telemetry["params"]["batches"] == 20  # the short size, not the full 60
    for bench in results["benches"].values():
        assert bench["mode"] == "short" and bench["wall_seconds"] > 0
        for f in bench["figures"]:
            assert {"name", "value", "unit", "target", "peer", "ratio", "verdict"} <= set(f)


def test_short_run_drops_its_databases(suite: dict) -> None:
    dbs = [db for b in suite["results"]["benches"].values() for db in b["databases"]]
    assert len(dbs) == 2 and all(db.startswith("charter_bench_") for db in dbs)
    assert not any(database_exists(db) for db in dbs)


def test_rendering_states_machine_date_targets_and_peers(suite: dict) -> None:
    md, machine = suite["markdown"], suite["results"]["machine"]
    assert suite["results_md_untouched"]
    assert "bench/run.py --short --only approvals,telemetry" in md
    assert f"{machine['nproc']} CPUs (nproc)" in md
    assert f"PostgreSQL {machine['postgresql']}" in md and f"Python {machine['python']}" in md
    assert machine["cpu"] in md and "GiB RAM" in md
    assert suite["results"]["date"] in md
    assert md.count("| figure | measured | target | peer | ratio | verdict |") == 2
    assert "| < 200 ms |" in md and "raw PostgreSQL: INSERT of the same JSON" in md
    assert "### Notes" in md  # the hand-written notes survive regeneration
    assert "cel-python" in md  # from bench/notes/approvals.md
    assert "Appendix: figures from earlier runs" in md


def test_suite_runs_in_about_a_minute(suite: dict) -> None:
    # two short benches; about 20 s on a quiet 2-core machine, more when it is shared
    assert suite["seconds"] < 180


def test_render_only_rerenders_a_results_file(suite: dict) -> None:
    target = suite["tmp"] / "again.md"
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--render", str(suite["out"]), "--results-md",
         str(target)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert target.read_text() == suite["markdown"]


def test_missing_bench_is_skipped_with_a_note(tmp_path: Path) -> None:
    run = load_run()
    absent = run.Bench("load", "load/does-not-exist.py", "Load test (issue 9)")
    result = run.run_one(absent, "short", tmp_path, "t", keep=False, timeout=10)
    assert result["status"] == "skipped"
    assert "not there" in result["note"]
    md = run.render(
        {
            "mode": "short",
            "command": "bench/run.py --short",
            "date": "2026-12-03 10:00 UTC",
            "wall_seconds": 1.0,
            "machine": {"nproc": 2, "cpu": "x", "ram_gib": 1, "os": "y", "python": "3.12",
                        "postgresql": "15", "load_average": 1.0},
            "benches": {"load": result},
        }
    )  # fmt: skip
    assert "## Load test (issue 9)" in md and "**Skipped**" in md


def test_figure_verdicts() -> None:
    load_run()
    from _common import figure

    assert figure("a", 10, "ms", target="< 20 ms", ok=True)["verdict"] == "pass"
    assert figure("a", 30, "ms", target="< 20 ms", ok=False)["verdict"] == "miss"
    f = figure("a", 50, "events/s", peer="raw", peer_value=200)
    assert f["verdict"] == "info" and f["ratio"] == 0.25 and f["ratio_text"] == "0.25×"
    assert f["peer_unit"] == "events/s"


def test_load_test_result_becomes_figures_beside_its_targets() -> None:
    run = load_run()
    total = {"requests": 9000, "failures": 3, "error_rate": 0.00033, "rps": 280.0,
             "p50_ms": 40.0, "p95_ms": 120.0, "p99_ms": 400.0}  # fmt: skip
    data = {
        "date": "2026-12-03T10:00:00+00:00",
        "load_s": 600.0,
        "config": {"users": 60, "duration_s": 600},
        "total": total,
        "endpoints": {"GET /api/v1/use-cases/": {**total, "rps": 50.0, "p95_ms": 90.0}},
        "target": {"rps": 300, "p95_ms": 250, "met": False},
        "celery": {"drain_s": 12.5},
        "verification": {"ok": True, "failures": []},
        "audit_chain": {"ok": False},
    }
    result = run.load_test_result(data)
    assert result["bench"] == "load"  # not the last endpoint's name
    figures = {f["name"]: f for f in result["figures"]}
    throughput = figures["throughput, 60 locust users, 600.0 s"]
    assert (throughput["value"], throughput["target"], throughput["verdict"]) == (
        280.0, "≥ 300 req/s", "miss",
    )  # fmt: skip
    assert figures["all requests, p95"]["verdict"] == "pass"
    assert figures["accepted writes present exactly once, nothing else written"]["verdict"] == (
        "pass"
    )
    assert figures["audit chain verifies after the load"]["verdict"] == "miss"
    assert figures["GET /api/v1/use-cases/, p95"]["value"] == 90.0


def test_a_paced_load_run_has_no_throughput_verdict_but_keeps_the_latency_target() -> None:
    run = load_run()
    total = {"requests": 90000, "failures": 0, "error_rate": 0.0, "rps": 149.6,
             "p50_ms": 40.0, "p95_ms": 190.0, "p99_ms": 400.0}  # fmt: skip
    data = {
        "load_s": 600.0,
        "config": {"users": 60, "target_rps": 150.0},
        "total": total,
        "target": {"rps": 300, "p95_ms": 250, "met": False},
    }
    result = run.load_test_result(data, "load-paced")
    figures = {f["name"]: f for f in result["figures"]}
    throughput = figures["throughput, 60 locust users, 600.0 s, paced at 150 req/s"]
    assert (throughput["target"], throughput["verdict"]) == (None, "info")
    p95 = figures["all requests, p95"]
    assert (p95["target"], p95["verdict"]) == ("< 250 ms", "pass")
    assert result["bench"] == "load-paced"


def test_the_paced_load_run_is_full_mode_only(tmp_path: Path) -> None:
    run = load_run()
    paced = run.BY_NAME["load-paced"]
    assert paced.script == run.BY_NAME["load"].script
    assert paced.full_args == ("--rps", str(run.PACED_RPS))
    result = run.run_one(paced, "short", tmp_path, "t", keep=False, timeout=10)
    assert result["status"] == "skipped" and "full mode only" in result["note"]
    assert not list(tmp_path.iterdir())  # nothing was started
