"""Charter's load test, start to finish, on this machine (loopback only).

    .venv/bin/python bench/load/run.py --duration 10m --users 60 --spawn-rate 10
    .venv/bin/python bench/load/run.py --short          # ~20 s, few users: a smoke run

1. creates a fresh PostgreSQL database ``charter_load_<timestamp>`` (a copy of a migrated
   template database, made once per set of migrations), seeds it through the service layer
   (``seed.py``);
2. starts gunicorn (threaded workers) and a Celery worker process on that database;
3. warms every gunicorn worker up, then runs locust headless in a separate process
   (``locustfile.py``: board members, training pipelines, serving fleets, OpenLineage
   producers), sampling the Celery backlog and the load average meanwhile;
4. stops the load, waits until the Celery queue is drained and every telemetry batch folded;
5. checks that every accepted write is present exactly once and nothing else was written
   (``verify.py``) and that ``manage.py verify_audit`` passes;
6. writes one JSON result (per-endpoint rps, p50/p95/p99, error rates, totals, the
   verification, the machine) and prints a summary; stops every process it started (also on
   Ctrl-C or SIGTERM) and drops the database unless ``--keep-db``.

Exit status: 0 when the verification and the audit chain pass, 1 otherwise (the throughput
target is reported, not enforced).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PY = sys.executable
BIN = Path(PY).parent
TARGET_RPS, TARGET_P95_MS = 300, 250

_children: list[subprocess.Popen[bytes]] = []


# ---------------------------------------------------------------- arguments


def duration_s(text: str) -> int:
    """``90``, ``90s``, ``10m``, ``1h`` -> seconds."""
    m = re.fullmatch(r"(\d+)([smh]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 10m)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


PROFILE_FILES = {"flamegraph": "profile.svg", "raw": "profile.txt", "speedscope": "profile.json"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=duration_s, default=None, help="load time (default 10m)")
    p.add_argument("--users", type=int, default=None, help="locust users (default 60)")
    p.add_argument("--spawn-rate", type=float, default=None, help="users started per second")
    p.add_argument("--rps", type=float, default=None, help=f"target req/s (default {TARGET_RPS})")
    p.add_argument("--short", action="store_true", help="a ~20 s smoke run with few users")
    p.add_argument("--workers", type=int, default=None, help="gunicorn workers (2*cores)")
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="gunicorn threads per worker (more than 1: gthread workers, with keep-alive)",
    )
    p.add_argument(
        "--worker-class",
        default="",
        help="gunicorn worker class (default: gunicorn's choice, gthread when threads > 1)",
    )
    p.add_argument("--celery-concurrency", type=int, default=1)
    p.add_argument(
        "--celery-nice",
        type=int,
        default=10,
        help="CPU niceness of the Celery worker: the folds queue up under load and drain "
        "after it, instead of taking CPU from requests (0: equal priority)",
    )
    p.add_argument("--telemetry-rows", type=int, default=50, help="rows per telemetry batch")
    p.add_argument("--use-cases", type=int, default=None, help="seeded use cases (12)")
    p.add_argument("--warmup", type=duration_s, default=None, help="warm-up load (15s)")
    p.add_argument("--drain-timeout", type=duration_s, default=duration_s("15m"))
    p.add_argument("--port", type=int, default=0, help="gunicorn port (0: a free one)")
    p.add_argument(
        "--pg",
        default=os.environ.get("CHARTER_LOAD_PG", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server URL without a database name",
    )
    p.add_argument(
        "--broker",
        default=os.environ.get("CHARTER_LOAD_BROKER", "redis://127.0.0.1:6379/10"),
        help="Redis broker URL (its 'celery' queue is purged first)",
    )
    p.add_argument("--out-dir", type=Path, default=None, help="default var/load/<timestamp>")
    p.add_argument("--result", type=Path, default=None, help="default <out-dir>/result.json")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument("--profile", action="store_true", help="py-spy record one gunicorn worker")
    p.add_argument(
        "--profile-format",
        choices=["flamegraph", "raw", "speedscope"],
        default="flamegraph",
        help="py-spy's output: flamegraph (profile.svg), raw collapsed stacks (profile.txt)",
    )
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only threads holding the GIL (where the Python CPU goes, not the waits)",
    )
    a = p.parse_args(argv)
    short = a.short
    a.duration = a.duration or (20 if short else 600)
    a.users = a.users or (12 if short else 60)
    a.spawn_rate = a.spawn_rate or (12 if short else 10)
    a.rps = a.rps or (40 if short else TARGET_RPS)
    a.use_cases = a.use_cases or (4 if short else 12)
    a.warmup = a.warmup if a.warmup is not None else (3 if short else 15)
    a.workers = a.workers or (2 if short else 2 * (os.cpu_count() or 1))
    return a


# ---------------------------------------------------------------- processes


def spawn(cmd: list[str], env: dict[str, str], log: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so that it and its children stop together)."""
    out = open(log, "ab")  # noqa: SIM115 (the child keeps it)

    def pre() -> None:
        # Runs after setsid(). With the kernel's autogroup scheduling on (Linux's default for
        # desktop and many server kernels), every session is a scheduling group of its own and
        # a process's nice value only ranks it within that group: the group's own nice must be
        # set too, or a "nice 10" worker still takes an equal share beside gunicorn's group.
        os.nice(nice)
        with suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(nice))

    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=pre if nice else None,  # noqa: PLW1509
    )
    out.close()
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def stop_all() -> None:
    for proc in reversed(_children):
        stop(proc)


def _on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_checked(cmd: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


# ---------------------------------------------------------------- database


def migrations_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def create_database(pg: str, name: str, env: dict[str, str]) -> None:
    """``name`` as a copy of a migrated template (migrated once per set of migrations)."""
    template = f"charter_load_tpl_{migrations_digest()}"
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone()
        if not exists:
            for (old,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'charter\\_load\\_tpl\\_%%'"
            ).fetchall():
                with suppress(psycopg.Error):
                    conn.execute(f'DROP DATABASE "{old}"')
            building = f"{template}_building"
            conn.execute(f'DROP DATABASE IF EXISTS "{building}"')
            conn.execute(f'CREATE DATABASE "{building}"')
            print(f"migrating a template database {template} (once per set of migrations)")
            run_checked(
                [PY, "manage.py", "migrate", "-v0"],
                {**env, "DATABASE_URL": f"{pg}/{building}"},
                "migrate",
            )
            conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def drop_database(pg: str, name: str) -> None:
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- measuring


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback)
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


class Sampler(threading.Thread):
    """Every few seconds: the Celery queue length, unfolded batches, the load average."""

    def __init__(self, broker: str, dsn: str, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.broker, self.dsn, self.every = redis.Redis.from_url(broker), dsn, every
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def sample(self) -> dict[str, Any]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            unfolded = conn.execute(
                "SELECT count(*) FROM workers_telemetrybatch WHERE folded_at IS NULL"
            ).fetchone()[0]
        return {
            "t": round(time.monotonic() - self.t0, 1),
            "queue": int(self.broker.llen("celery")),
            "unacked": int(self.broker.hlen("unacked")),
            "unfolded": int(unfolded),
            "load1": round(os.getloadavg()[0], 2),
        }

    def run(self) -> None:
        while not self.halt.wait(self.every):
            with suppress(Exception):
                self.samples.append(self.sample())


def drain(sampler: Sampler, timeout: float) -> float:
    """Wait until the queue is empty, nothing unacked and every batch folded; seconds taken."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        s = sampler.sample()
        if s["queue"] == 0 and s["unacked"] == 0 and s["unfolded"] == 0:
            return round(time.monotonic() - t0, 1)
        time.sleep(1)
    raise SystemExit(f"the Celery backlog did not drain within {timeout:.0f} s: {s}")


def read_stats(path: Path) -> dict[str, Any]:
    """Locust's ``_stats.csv``: per endpoint and the aggregate."""
    rows = list(csv.DictReader(path.open()))
    endpoints = {}
    total: dict[str, Any] = {}
    for row in rows:
        n = int(row["Request Count"])
        failures = int(row["Failure Count"])
        item = {
            "requests": n,
            "failures": failures,
            "error_rate": round(failures / n, 5) if n else 0.0,
            "rps": round(float(row["Requests/s"]), 2),
            "p50_ms": float(row["50%"]),
            "p95_ms": float(row["95%"]),
            "p99_ms": float(row["99%"]),
            "mean_ms": round(float(row["Average Response Time"]), 1),
            "max_ms": round(float(row["Max Response Time"]), 1),
        }
        if row["Name"] == "Aggregated":
            total = item
        else:
            endpoints[f"{row['Name']}"] = item
    return {"endpoints": endpoints, "total": total}


def machine() -> dict[str, Any]:
    cpu = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------- the run


def locust_cmd(
    a: argparse.Namespace, host: str, seconds: int, users: int, csv_prefix: Path
) -> list[str]:
    return [
        str(BIN / "locust"),
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(a.spawn_rate),
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "30",
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    out = (a.out_dir or ROOT / "var" / "load" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    result_path = a.result or out / "result.json"
    db = f"charter_load_{stamp}_{os.getpid()}"
    dsn = f"{a.pg}/{db}"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "CELERY_BROKER_URL": a.broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CHARTER_VAR_DIR": str(out / "var"),
        "CHARTER_MEDIA_ROOT": str(out / "var" / "media"),
        "SECRET_KEY": "charter-load-test-" + stamp,
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
    }
    for k in ("CHARTER_PRODUCTION", "DJANGO_SETTINGS_MODULE"):
        env.pop(k, None)
    port = a.port or _free_port()
    host = f"http://127.0.0.1:{port}"
    created = False
    t_start = time.time()
    load_before = os.getloadavg()
    try:
        print(f"database {db}; output {out}")
        create_database(a.pg, db, env)
        created = True
        t0 = time.monotonic()
        fixture = out / "fixture.json"
        print(
            run_checked(
                [PY, str(HERE / "seed.py"), "--out", str(fixture), "--use-cases", str(a.use_cases)]
                + (["--board-members", "3"] if a.short else []),
                env,
                "seed",
            ).strip(),
            f"({time.monotonic() - t0:.0f} s)",
        )
        broker = redis.Redis.from_url(a.broker)
        broker.delete("celery", "unacked", "unacked_index")
        gunicorn = spawn(
            [
                str(BIN / "gunicorn"),
                "portal.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(a.workers),
                "--threads",
                str(a.threads),
                *(["--worker-class", a.worker_class] if a.worker_class else []),
                "--backlog",
                "2048",
                "--timeout",
                "60",
                "--graceful-timeout",
                "20",
            ],
            env,
            out / "gunicorn.log",
        )
        worker = spawn(
            [
                PY,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                str(a.celery_concurrency),
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
            out / "celery.log",
            nice=a.celery_nice,
        )
        wait_http(f"{host}/login/")
        for proc, name in ((gunicorn, "gunicorn"), (worker, "celery")):
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited; see {out}/{name}.log")
        load_env = {
            **env,
            "CHARTER_LOAD_FIXTURE": str(fixture),
            "CHARTER_LOAD_WRITELOG": str(out / "writes.jsonl"),
            "CHARTER_LOAD_TELEMETRY_ROWS": str(a.telemetry_rows),
        }
        if a.warmup:
            # every gunicorn worker imports the views, loads the lineage graph and fills its
            # connection on its first requests: keep that out of the measured run (its writes
            # go to the same log and are verified all the same)
            users = min(a.users, max(8, 2 * a.workers))
            print(f"warm-up: {a.warmup} s, {users} users")
            warm = spawn(
                locust_cmd(a, host, a.warmup, users, out / "warmup"),
                {**load_env, "CHARTER_LOAD_RPS": str(a.rps / 4), "CHARTER_LOAD_USERS": str(users)},
                out / "warmup.log",
            )
            warm.wait()
        sampler = Sampler(a.broker, dsn)
        sampler.start()
        profiler = None
        if a.profile:
            pid = _a_gunicorn_worker(gunicorn.pid)
            profiler = spawn(
                [
                    str(BIN / "py-spy"),
                    "record",
                    "-o",
                    str(out / PROFILE_FILES[a.profile_format]),
                    "-f",
                    a.profile_format,
                    "-p",
                    str(pid),
                    "-d",
                    str(a.duration),
                    "--rate",
                    "50",
                    "--nonblocking",
                    *(["--gil"] if a.profile_gil else []),
                ],
                env,
                out / "py-spy.log",
            )
        print(f"load: {a.duration} s, {a.users} users (+{a.spawn_rate}/s), target {a.rps:g} req/s")
        t_load = time.monotonic()
        groups = {"gunicorn": gunicorn.pid, "celery": worker.pid}
        cpu_before = {**cpu_seconds(groups), "locust": _children_cpu()}
        locust = spawn(
            locust_cmd(a, host, a.duration, a.users, out / "locust"),
            {**load_env, "CHARTER_LOAD_RPS": str(a.rps), "CHARTER_LOAD_USERS": str(a.users)},
            out / "locust.log",
        )
        locust.wait()
        load_s = round(time.monotonic() - t_load, 1)
        cpu_after = cpu_seconds(groups)
        # locust has exited: its CPU time is among this process's reaped children's
        cpu_after["locust"] = _children_cpu()
        if profiler is not None:
            profiler.wait(timeout=60)
        sampler.halt.set()
        backlog = sampler.sample()
        print(f"load done in {load_s} s; backlog {backlog}; draining")
        drain_s = drain(sampler, a.drain_timeout)
        stop(locust)
        stop(gunicorn)
        stop(worker)
        verification = subprocess.run(
            [
                PY,
                str(HERE / "verify.py"),
                "--writelog",
                str(out / "writes.jsonl"),
                "--out",
                str(out / "verification.json"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        verified = json.loads((out / "verification.json").read_text())
        audit = subprocess.run(
            [PY, "manage.py", "verify_audit", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        try:
            audit_result = json.loads(audit.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            audit_result = {"output": audit.stdout[-2000:], "stderr": audit.stderr[-2000:]}
        stats = read_stats(out / "locust_stats.csv")
        total = stats["total"]
        result = {
            "date": datetime.fromtimestamp(t_start, UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "config": {
                "duration_s": a.duration,
                "users": a.users,
                "spawn_rate": a.spawn_rate,
                "target_rps": a.rps,
                "gunicorn_workers": a.workers,
                "gunicorn_threads": a.threads,
                "gunicorn_worker_class": a.worker_class or ("gthread" if a.threads > 1 else "sync"),
                "celery_concurrency": a.celery_concurrency,
                "celery_nice": a.celery_nice,
                "telemetry_rows_per_batch": a.telemetry_rows,
                "use_cases": a.use_cases,
                "warmup_s": a.warmup,
                "short": a.short,
                "database": db,
            },
            "load_s": load_s,
            "throughput_rps": total.get("rps"),
            "total": total,
            "endpoints": stats["endpoints"],
            "target": {
                "rps": TARGET_RPS,
                "p95_ms": TARGET_P95_MS,
                "met": bool(
                    total and total["rps"] >= TARGET_RPS and total["p95_ms"] < TARGET_P95_MS
                ),
            },
            "cpu": cpu_report(cpu_before, cpu_after, total.get("requests", 0)),
            "celery": {"backlog_at_end": backlog, "drain_s": drain_s, "samples": sampler.samples},
            "verification": verified,
            "audit_chain": {"ok": audit.returncode == 0, **audit_result},
            "ok": verification.returncode == 0 and audit.returncode == 0,
        }
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.write_text(json.dumps(result, indent=1, default=str))
        print_summary(result)
        print(f"result: {result_path}")
        return 0 if result["ok"] else 1
    except KeyboardInterrupt:
        print("interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if created and not a.keep_db:
            with suppress(psycopg.Error):
                drop_database(a.pg, db)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _a_gunicorn_worker(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def cpu_seconds(groups: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) used so far by each process group in ``groups`` (name ->
    the pid of the session leader ``spawn`` started), by PostgreSQL's server processes,
    and by the whole machine (``machine``: busy time over all CPUs)."""
    totals = dict.fromkeys([*groups, "postgresql"], 0.0)
    by_group = {pgid: name for name, pgid in groups.items()}
    for proc in psutil.process_iter(["name"]):
        try:
            times = proc.cpu_times()
            group = os.getpgid(proc.pid)
        except (psutil.Error, ProcessLookupError):
            continue
        name = by_group.get(group) or ("postgresql" if proc.info["name"] == "postgres" else None)
        if name is not None:
            totals[name] += times.user + times.system
        if name == "postgresql":  # the postmaster: its backends that have exited meanwhile
            totals[name] += times.children_user + times.children_system
    machine = psutil.cpu_times()
    totals["machine"] = (
        machine.user + machine.nice + machine.system + machine.irq + (machine.softirq)
    )
    return totals


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_report(before: dict[str, float], after: dict[str, float], requests: int) -> dict:
    """Where the CPU went during the load: seconds and milliseconds per request."""
    used = {name: max(0.0, after[name] - before[name]) for name in before}
    used["other"] = max(0.0, used["machine"] - sum(v for k, v in used.items() if k != "machine"))
    return {
        name: {"s": round(v, 1), "ms_per_request": round(1000 * v / max(1, requests), 2)}
        for name, v in used.items()
    }


def print_summary(r: dict[str, Any]) -> None:
    print(f"\n{'endpoint':<44} {'req':>7} {'rps':>7} {'p50':>6} {'p95':>6} {'p99':>6} {'err%':>6}")
    for name, e in sorted(r["endpoints"].items(), key=lambda kv: -kv[1]["requests"]):
        print(
            f"{name[:44]:<44} {e['requests']:>7} {e['rps']:>7.1f} {e['p50_ms']:>6.0f} "
            f"{e['p95_ms']:>6.0f} {e['p99_ms']:>6.0f} {100 * e['error_rate']:>6.2f}"
        )
    t = r["total"]
    print(
        f"{'TOTAL':<44} {t['requests']:>7} {t['rps']:>7.1f} {t['p50_ms']:>6.0f} "
        f"{t['p95_ms']:>6.0f} {t['p99_ms']:>6.0f} {100 * t['error_rate']:>6.2f}"
    )
    v = r["verification"]
    for kind in ("telemetry", "lineage", "model_version", "evidence"):
        k = v[kind]
        print(
            f"{kind:<14} accepted {k['accepted']:>6}  present {k['present']:>6}  missing "
            f"{k['missing']}  doubled {k['doubled']}  unexpected {k['unexpected']}  in doubt "
            f"{k['in_doubt']} ({k['in_doubt_present']} present)"
        )
    if r.get("cpu"):
        print(
            "CPU per request (ms): "
            + ", ".join(f"{k} {v['ms_per_request']}" for k, v in r["cpu"].items())
        )
    print(f"celery drained in {r['celery']['drain_s']} s after the load")
    print(f"verification: {'ok' if v['ok'] else 'FAILED ' + '; '.join(v['failures'])}")
    print(f"audit chain: {'verified' if r['audit_chain']['ok'] else 'BROKEN'}")
    print(
        f"target {r['target']['rps']} req/s at p95 < {r['target']['p95_ms']} ms: "
        f"{'met' if r['target']['met'] else 'not met'}"
    )


if __name__ == "__main__":
    sys.exit(main())
