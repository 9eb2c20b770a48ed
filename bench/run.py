"""Every Charter benchmark behind one command, and ``bench/RESULTS.md`` regenerated from it.

    .venv/bin/python bench/run.py [--short | --full] [--only name,...]
        [--out bench/results/<date>-<mode>.json] [--results-md PATH] [--keep-databases]
    .venv/bin/python bench/run.py --render bench/results/<file>.json [--results-md PATH]

Each bench runs as its own subprocess (``bench/<name>_bench.py [--short] --json …``) on its
own database on the shared PostgreSQL (``charter_bench_<name>_<run id>``, dropped afterwards
unless ``--keep-databases``). The figures of all benches — each beside its target and its
peer — are collected into one JSON file, and the Markdown is rendered from it: a header with
the command, the machine and the date, then per bench a table "figure | measured | target |
peer | ratio | verdict" followed by the hand-written notes in ``bench/notes/<name>.md`` and, at
the end, ``bench/notes/history.md`` (figures from earlier runs, not regenerated).

``bench/RESULTS.md`` is rewritten when the whole suite ran (no ``--only``) or when
``--results-md`` names it; ``--render`` re-renders a results file without running anything.
The load test (``bench/load/run.py``) is one more entry: it manages its own database and writes
its own result file (``--result``), read here as figures; it is noted as skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NOTES = BENCH / "notes"
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")


#: the paced load run's rate: about 90% of the ~168 req/s this mix saturates a 2-core machine at
PACED_RPS = 150


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    title: str
    uses_db: bool = True
    env: dict[str, str] = field(default_factory=dict)  # extra databases: env var -> prefix
    #: arguments of the full-mode run; a bench with some runs in full mode only
    full_args: tuple[str, ...] = ()


BENCHES = [
    Bench("registry", "registry_bench.py", "Registry lists at scale (issue 2)"),
    Bench("audit", "audit_bench.py", "Audit chain (issue 3)"),
    Bench("approvals", "approvals_bench.py", "Approvals (issue 4)"),
    Bench("lineage", "lineage_bench.py", "Lineage (issue 5)"),
    Bench("drift", "drift_bench.py", "Drift statistics (issue 6)", uses_db=False),
    Bench("telemetry", "telemetry_bench.py", "Telemetry ingestion (issue 6)"),
    Bench("retraining", "retraining_bench.py", "Retraining executors (issue 7)", uses_db=False),
    Bench(
        "registration",
        "registration_bench.py",
        "Pipeline registration (issue 8)",
        env={"BENCH_MLFLOW_DATABASE": "mlflow_bench"},
    ),
    # manages its own database (charter_load_<timestamp>, dropped by it) and writes --result
    Bench("load", "load/run.py", "Load test (issue 9)", uses_db=False),
    # the same mix paced below the machine's ceiling: the latency it holds when not saturated
    Bench(
        "load-paced",
        "load/run.py",
        f"Load test paced at {PACED_RPS} req/s (issue 9)",
        uses_db=False,
        full_args=("--rps", str(PACED_RPS)),
    ),
]
BY_NAME = {b.name: b for b in BENCHES}


# ----------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM, OS, Python and PostgreSQL of this machine, and its load now."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown",
        )
        meminfo = Path("/proc/meminfo").read_text()
        kb = next(int(line.split()[1]) for line in meminfo.splitlines() if "MemTotal" in line)
        info["ram_gib"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        info.setdefault("cpu", platform.processor() or "unknown")
    os_name = platform.system()
    try:
        release = Path("/etc/os-release").read_text()
        os_name = next(
            line.split("=", 1)[1].strip('"')
            for line in release.splitlines()
            if line.startswith("PRETTY_NAME=")
        )
    except (OSError, StopIteration):
        pass
    info["os"] = f"{os_name}, kernel {platform.release()}"
    info["postgresql"] = postgres_version()
    info["load_average"] = round(os.getloadavg()[0], 1)
    return info


def postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
    except Exception as exc:  # noqa: BLE001 — reported, not fatal
        return f"unreachable ({type(exc).__name__})"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ----------------------------------------------------------------- running


def load_test_result(data: dict[str, Any], name: str = "load") -> dict[str, Any]:
    """bench/load/run.py's result file as figures beside its targets."""
    from _common import figure

    total, target = data.get("total") or {}, data.get("target") or {}
    rps_target, p95_target = target.get("rps"), target.get("p95_ms")
    config = data.get("config") or {}
    asked = config.get("target_rps")
    paced = bool(asked and rps_target and asked < rps_target)
    figures = []
    if total:
        figures += [
            figure(
                f"throughput, {config.get('users')} locust users, {data.get('load_s')} s"
                + (f", paced at {asked:g} req/s" if paced else ""),
                total["rps"],
                "req/s",
                # a run asked for less than the target says nothing about reaching it
                target=f"≥ {rps_target} req/s" if rps_target and not paced else None,
                ok=total["rps"] >= rps_target if rps_target and not paced else None,
                note=f"{total['requests']:,} requests",
            ),
            figure(
                "all requests, p95",
                total["p95_ms"],
                "ms",
                target=f"< {p95_target} ms" if p95_target else None,
                ok=total["p95_ms"] < p95_target if p95_target else None,
                note=f"p50 {total['p50_ms']:.0f} ms, p99 {total['p99_ms']:.0f} ms",
            ),
            figure(
                "error rate", 100 * total["error_rate"], "%", note=f"{total['failures']} failed"
            ),
        ]
    verification = data.get("verification") or {}
    if verification:
        figures.append(
            figure(
                "accepted writes present exactly once, nothing else written",
                1 if verification.get("ok") else 0,
                "(1 = yes)",
                target="yes",
                ok=bool(verification.get("ok")),
                note="; ".join(verification.get("failures") or []) or None,
            )
        )
    if "audit_chain" in data:
        figures.append(
            figure(
                "audit chain verifies after the load",
                1 if data["audit_chain"].get("ok") else 0,
                "(1 = yes)",
                target="yes",
                ok=bool(data["audit_chain"].get("ok")),
            )
        )
    drain = (data.get("celery") or {}).get("drain_s")
    if drain is not None:
        figures.append(figure("Celery backlog drained after the load", drain, "s"))
    cpu = data.get("cpu") or {}
    if "machine" in cpu:
        figures.append(
            figure(
                "CPU per request, whole machine",
                cpu["machine"]["ms_per_request"],
                "ms",
                note=", ".join(
                    f"{name} {v['ms_per_request']}" for name, v in cpu.items() if name != "machine"
                ),
            )
        )
    endpoints = sorted((data.get("endpoints") or {}).items(), key=lambda kv: -kv[1]["rps"])
    for endpoint, e in endpoints:
        figures.append(
            figure(
                f"{endpoint}, p95",
                e["p95_ms"],
                "ms",
                note=f"{e['rps']:.1f} req/s, p50 {e['p50_ms']:.0f} ms, "
                f"errors {100 * e['error_rate']:.2f}%",
            )
        )
    return {
        "bench": name,
        "params": config,
        "figures": figures,
        "extra": {"machine": data.get("machine"), "date": data.get("date")},
    }


def run_one(
    bench: Bench,
    mode: str,
    work: Path,
    run_id: str,
    keep: bool,
    timeout: float,
    extra_args: list[str] | None = None,
) -> dict[str, Any]:
    script = BENCH / bench.script
    if not script.exists():
        return {
            "status": "skipped",
            "note": f"bench/{bench.script} is not there (yet); nothing run",
        }
    if bench.full_args and mode == "short":
        return {
            "status": "skipped",
            "note": "full mode only (short mode's smoke run of the same script stands for it)",
        }
    json_path = work / f"{bench.name}.json"
    log_path = work / f"{bench.name}.log"
    env = {**os.environ, "CHARTER_VAR_DIR": str(ROOT / "var" / "bench" / bench.name)}
    databases = []
    if bench.uses_db:
        db = f"charter_bench_{bench.name}_{run_id}"
        env.update(BENCH_DATABASE_NAME=db, DATABASE_URL=f"{PG}/{db}")
        databases.append(db)
    for var, prefix in bench.env.items():
        env[var] = f"{prefix}_{run_id}"
        databases.append(env[var])
    cmd = [sys.executable, str(script)]
    if mode == "short":
        cmd.append("--short")
    cmd += [*bench.full_args, *(extra_args or [])]
    foreign = bench.script == "load/run.py"  # its own result format, written by --result
    if foreign:
        cmd += ["--result", str(work / f"{bench.name}-result.json")]
    else:
        cmd += ["--json", str(json_path)]
    paths = (str(json_path), str(work / f"{bench.name}-result.json"))
    shown = " ".join(
        [".venv/bin/python", str(script.relative_to(ROOT))]
        + [a + " PATH" if a in ("--json", "--result") else a for a in cmd[2:] if a not in paths]
    )
    print(f"== {bench.name}: {shown}", flush=True)
    t0 = time.time()
    status, note = "ok", None
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
        if proc.returncode != 0:
            status, note = "failed", f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        status, note = "failed", f"timed out after {timeout:.0f} s"
    finally:
        if not keep:
            for db in databases:
                try:
                    drop_database(db)
                except Exception as exc:  # noqa: BLE001 — reported below
                    note = (note + "; " if note else "") + f"could not drop {db}: {exc}"
    seconds = round(time.time() - t0, 1)
    result: dict[str, Any] = {}
    if json_path.exists():
        result = json.loads(json_path.read_text())
    elif foreign and (work / f"{bench.name}-result.json").exists():
        result = load_test_result(
            json.loads((work / f"{bench.name}-result.json").read_text()), bench.name
        )
    if status == "ok" and not result:
        status, note = "failed", "no JSON result written"
    log_tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    print(f"   {status} in {seconds:.0f} s" + (f" ({note})" if note else ""), flush=True)
    if status != "ok":
        print(log_tail[-1500:], flush=True)
    return {
        **result,
        "status": status,
        "note": note,
        "command": shown,
        "wall_seconds": seconds,
        "databases": databases,
        "databases_dropped": not keep,
        "log_tail": log_tail if status != "ok" else "",
    }


# ----------------------------------------------------------------- rendering


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    v = float(value)
    if abs(v) >= 1e7:
        return f"{v / 1e6:,.1f} M"
    if v == int(v):
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


VERDICT = {"pass": "✔ pass", "miss": "✘ miss", "info": "–", "n/a": "n/a"}


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    mode = results["mode"]
    lines = [
        "# Benchmark results",
        "",
        "<!-- Generated by bench/run.py from "
        f"{results.get('results_file', 'a results file')}. Do not edit the tables: edit "
        "bench/notes/<bench>.md (notes) or bench/notes/history.md (appendix) and re-render with "
        "`bench/run.py --render <results file>`. -->",
        "",
        f"- **Command**: `{results['command']}`"
        + (
            " — short mode: sizes below the issues', so the verdicts are indicative; the "
            "targets are about the full mode (`make bench-full`)."
            if mode == "short"
            else " — full mode: the sizes the issues ask for."
        ),
        f"- **Date**: {results['date']} (the suite took {results['wall_seconds'] / 60:.0f} min"
        + ("" if results.get("complete", True) else "; interrupted: benches not listed did not run")
        + ")",
        f"- **Machine**: {m['nproc']} CPUs (nproc), {m.get('cpu', 'unknown CPU')}, "
        f"{m.get('ram_gib', '?')} GiB RAM; {m['os']}; Python {m['python']}; "
        f"PostgreSQL {m['postgresql']} on localhost.",
        f"- **Load**: load average {m['load_average']} when the suite started, "
        f"{results.get('load_average_end', '?')} when it ended. The machine is shared with "
        "other sessions, so absolute times are noisy; ratios measured back to back in one run "
        "mean more than any single figure.",
        "- **Verdicts**: ✔ the figure meets the issue's target, ✘ it misses it, – no target "
        "(context or peer only). Ratio: measured ÷ peer unless stated otherwise.",
        "",
        "## Summary",
        "",
        "| bench | status | figures | ✔ | ✘ | took |",
        "|---|---|---|---|---|---|",
    ]
    ordered = [b for b in BENCHES if b.name in results["benches"]]
    for b in ordered:
        r = results["benches"][b.name]
        figs = r.get("figures", [])
        verdicts = [f["verdict"] for f in figs]
        lines.append(
            f"| [{b.title}](#{anchor(b.title)}) | {r['status']} | {len(figs)} | "
            f"{verdicts.count('pass')} | {verdicts.count('miss')} | "
            f"{fmt(r.get('wall_seconds'))} s |"
        )
    for b in ordered:
        r = results["benches"][b.name]
        lines += ["", f"## {b.title}", ""]
        meta = f"Command: `{r.get('command', b.script)}`"
        if r.get("wall_seconds") is not None:
            meta += f" · took {fmt(r['wall_seconds'])} s"
        if r.get("databases"):
            dropped = " (dropped afterwards)" if r.get("databases_dropped") else " (kept)"
            meta += f" · database {', '.join(r['databases'])}{dropped}"
        if r.get("params"):
            params = ", ".join(
                f"{k}={v}" for k, v in r["params"].items() if k not in ("mode", "child")
            )
            meta += f" · parameters: {params}"
        lines.append(meta)
        lines.append("")
        if r.get("separate_run"):
            lines += [f"Note: {r['separate_run']}.", ""]
        if r["status"] != "ok":
            lines += [f"**{r['status'].capitalize()}**: {r.get('note') or ''}".rstrip(), ""]
            if r.get("log_tail"):
                tail = r["log_tail"].strip().splitlines()[-8:]
                lines += ["```", *tail, "```", ""]
        for part, why in (r.get("skipped") or {}).items():
            lines += [f"Skipped {part}: {why}.", ""]
        if r.get("figures"):
            lines += [
                "| figure | measured | target | peer | ratio | verdict |",
                "|---|---|---|---|---|---|",
            ]
            for f in r["figures"]:
                name = f["name"] + (f" — {f['note']}" if f.get("note") else "")
                measured = f"{fmt(f['value'])} {f['unit']}".strip()
                peer = "–"
                if f.get("peer"):
                    peer = f["peer"]
                    if f.get("peer_value") is not None:
                        peer += f": {fmt(f['peer_value'])} {f.get('peer_unit') or ''}".rstrip()
                lines.append(
                    "| "
                    + " | ".join(
                        cell(x)
                        for x in (
                            name,
                            measured,
                            f.get("target") or "–",
                            peer,
                            f.get("ratio_text") or "–",
                            VERDICT.get(f["verdict"], f["verdict"]),
                        )
                    )
                    + " |"
                )
            lines.append("")
        notes = NOTES / f"{b.name}.md"
        if notes.exists():
            lines += ["### Notes", "", notes.read_text().strip(), ""]
    history = NOTES / "history.md"
    if history.exists():
        lines += ["", history.read_text().strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def anchor(title: str) -> str:
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")


# ----------------------------------------------------------------- main


def combine(paths: list[Path]) -> dict[str, Any]:
    """The first results file, with the benches of the later ones (each noted as such)."""
    results = json.loads(paths[0].read_text())
    for path in paths[1:]:
        other = json.loads(path.read_text())
        for name, bench in other["benches"].items():
            bench["separate_run"] = (
                f"measured in a separate run, `{other['command']}`, on {other['date']} "
                f"(load average {other['machine']['load_average']} at its start), "
                f"results file {other.get('results_file', path.name)}"
            )
            results["benches"][name] = bench
    return results


def shown_args(argv: list[str]) -> list[str]:
    """The arguments that change the figures (not where the files go)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--out", "--results-md"):
            skip = True
            continue
        if arg.startswith(("--out=", "--results-md=")):
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--short", action="store_true", help="small sizes (the default)")
    group.add_argument("--full", action="store_true", help="the sizes the issues ask for")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BY_NAME)}")
    parser.add_argument("--out", type=Path, help="results JSON (bench/results/<date>-<mode>.json)")
    parser.add_argument("--results-md", type=Path, help="Markdown to regenerate")
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        help="only re-render results JSON; benches in later files replace or add to the first's",
    )
    parser.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help='more options for one bench, e.g. --args "retraining=--skip slurm" (repeatable)',
    )
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument("--timeout", type=float, help="seconds per bench (short 900, full 7200)")
    args = parser.parse_args(argv)

    if args.render:
        results = combine(args.render)
        target = args.results_md or BENCH / "RESULTS.md"
        target.write_text(render(results))
        print(f"rendered {', '.join(map(str, args.render))} into {target}")
        return 0

    mode = "full" if args.full else "short"
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"--only: unknown bench {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    extra: dict[str, list[str]] = {}
    for item in args.args:
        name, _, rest = item.partition("=")
        if name not in BY_NAME:
            parser.error(f"--args: unknown bench {name!r}")
        extra.setdefault(name, []).extend(shlex.split(rest))
    date = time.strftime("%Y-%m-%d")
    out = args.out or BENCH / "results" / f"{date}-{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f"{out.stem}-parts"
    work.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or (900.0 if mode == "short" else 7200.0)
    run_id = uuid.uuid4().hex[:8]
    command = ".venv/bin/python bench/run.py " + " ".join(
        shlex.quote(a) for a in shown_args(argv if argv is not None else sys.argv[1:])
    )
    results: dict[str, Any] = {
        "schema": 1,
        "mode": mode,
        "command": command.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "benches": {},
    }
    try:
        results["results_file"] = str(out.resolve().relative_to(ROOT))
    except ValueError:
        results["results_file"] = str(out)
    t0 = time.time()
    for name in names:
        results["benches"][name] = run_one(
            BY_NAME[name], mode, work, run_id, args.keep_databases, timeout, extra.get(name)
        )
        # saved after every bench, so an interrupted run keeps what it measured
        results["complete"] = len(results["benches"]) == len(names)
        results["wall_seconds"] = round(time.time() - t0, 1)
        results["load_average_end"] = round(os.getloadavg()[0], 1)
        out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"results: {out}")
    target = args.results_md or (BENCH / "RESULTS.md" if not args.only else None)
    if target is not None:
        target.write_text(render(results))
        print(f"rendered: {target}")
    failed = [n for n, r in results["benches"].items() if r["status"] == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
