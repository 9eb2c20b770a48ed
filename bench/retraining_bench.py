"""Retraining executors (issue 7): the overhead of submit + first status per backend, beside
the backend's own submission on the same machine.

    .venv/bin/python bench/retraining_bench.py [--jobs 20] [--ray-address http://…:8265]
        [--skip local slurm ray] [--short] [--json PATH]

``--short``: 5 jobs per measurement, 2 through the Ray CLI (11 s each on a loaded 2-core
machine), and Slurm only when ``sbatch`` is already installed (full mode runs
``scripts/slurm-up.sh``, which installs it).

For each backend, ``--jobs`` jobs of ``true`` (nothing to run: the figure is the overhead):

* **Charter** — ``executor.submit(job)`` then ``executor.status(id)`` (what the submit task and
  the first poll do, without the database);
* **raw** — the backend's own tool: ``sbatch --parsable --wrap=true`` for Slurm, ``ray job
  submit --no-wait -- true`` (the CLI, a new Python process each time) and the Python SDK's
  ``JobSubmissionClient.submit_job`` for Ray, ``subprocess.Popen(["true"])`` locally.

Slurm comes from ``scripts/slurm-up.sh`` (root), Ray from a head this script starts on free
ports (and stops) unless ``--ray-address`` names one. p50 and p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("CHARTER_VAR_DIR", str(ROOT / "var" / "bench"))


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]


def job(prefix: str) -> object:
    from workers.executors import ExecutorJob, Resources

    key = f"bench-{prefix}-{uuid.uuid4().hex[:10]}"
    return ExecutorJob(
        key=key,
        name=key,
        command=["true"],
        env={"CHARTER_URL": "http://127.0.0.1:8000"},
        secrets={"CHARTER_TOKEN": "chtr_bench_token"},
        resources=Resources(cpus=1, memory_mb=64),
        time_limit_s=300,
    )


def charter(executor: object, prefix: str) -> Callable[[], object]:
    def run() -> object:
        external_id = executor.submit(job(prefix))  # type: ignore[attr-defined]
        return executor.status(external_id)  # type: ignore[attr-defined]

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ray() -> tuple[str, subprocess.Popen]:
    dashboard = free_port()
    temp = tempfile.mkdtemp(prefix="charter-ray-bench-", dir="/tmp")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            f"--port={free_port()}",
            "--num-cpus=4",
            "--num-gpus=1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):  # noqa: S310
                return url, proc
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the Ray head did not come up")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    import shutil

    sys.path.insert(0, str(ROOT / "bench"))
    from _common import parse

    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, help="jobs per measurement (20)")
    parser.add_argument("--cli-jobs", type=int, help="jobs through the Ray CLI (= --jobs)")
    parser.add_argument("--ray-address", default="")
    parser.add_argument("--skip", nargs="*", default=[], choices=["local", "slurm", "ray"])
    args = parse(parser, full={"jobs": 20}, short={"jobs": 5, "cli_jobs": 2})
    if args.cli_jobs is None:
        args.cli_jobs = args.jobs
    skipped: dict[str, str] = {}
    if args.short and "slurm" not in args.skip and shutil.which("sbatch") is None:
        args.skip.append("slurm")
        skipped["slurm"] = "sbatch not installed (short mode does not run scripts/slurm-up.sh)"
    import django

    django.setup()
    from workers.executors.local import LocalExecutor

    n = args.jobs
    rows: list[tuple[str, str, list[float]]] = []
    workdir = Path(tempfile.mkdtemp(prefix="charter-bench-"))

    if "local" not in args.skip:
        local = LocalExecutor("local", root=str(workdir / "local"))
        rows.append(
            ("local process", "Charter: submit + first status", timed(charter(local, "l"), n))
        )
        rows.append(
            (
                "local process",
                "raw: subprocess.Popen(['true'])",
                timed(lambda: subprocess.Popen(["true"]).wait(), n),
            )  # noqa: S607
        )

    if "slurm" not in args.skip:
        from workers.executors.slurm import SlurmExecutor

        up = subprocess.run([str(ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True)
        if up.returncode != 0:
            skipped["slurm"] = f"scripts/slurm-up.sh failed: {up.stderr.strip()[-300:]}"
            args.skip.append("slurm")
    if "slurm" not in args.skip:
        from workers.executors.slurm import SlurmExecutor

        slurm = SlurmExecutor("slurm", root=str(workdir / "slurm"))
        rows.append(("Slurm", "Charter: submit + first status", timed(charter(slurm, "s"), n)))
        out = str(workdir / "raw-%j.out")
        rows.append(
            (
                "Slurm",
                "raw: sbatch --parsable --wrap=true",
                timed(
                    lambda: subprocess.run(
                        ["sbatch", "--parsable", f"--output={out}", "--wrap=true"],
                        check=True,
                        capture_output=True,
                    ),
                    n,
                ),
            )
        )
        rows.append(
            (
                "Slurm",
                "raw: sbatch + scontrol show job",
                timed(
                    lambda: subprocess.run(
                        [
                            "scontrol",
                            "show",
                            "job",
                            "-o",
                            subprocess.run(
                                ["sbatch", "--parsable", f"--output={out}", "--wrap=true"],
                                check=True,
                                capture_output=True,
                                text=True,
                            ).stdout.strip(),
                        ],
                        check=True,
                        capture_output=True,
                    ),
                    n,
                ),
            )
        )

    if "ray" not in args.skip:
        from workers.executors.ray_jobs import RayExecutor

        head = None
        address = args.ray_address
        if not address:
            address, head = start_ray()
        try:
            ray_ex = RayExecutor("ray", address=address)
            ray_ex.client()  # connect once (a worker keeps its executor)
            ray_ex.submit(job("warm"))  # the first job starts Ray's job agent
            rows.append(("Ray", "Charter: submit + first status", timed(charter(ray_ex, "r"), n)))
            from ray.job_submission import JobSubmissionClient

            sdk = JobSubmissionClient(address)
            rows.append(
                (
                    "Ray",
                    "raw: JobSubmissionClient.submit_job",
                    timed(lambda: sdk.submit_job(entrypoint="true"), n),
                )
            )
            ray_cli = str(Path(sys.executable).with_name("ray"))
            rows.append(
                (
                    "Ray",
                    "raw: ray job submit --no-wait -- true (CLI)",
                    timed(
                        lambda: subprocess.run(
                            [
                                ray_cli,
                                "job",
                                "submit",
                                f"--address={address}",
                                "--no-wait",
                                "--",
                                "true",
                            ],
                            check=True,
                            capture_output=True,
                        ),
                        args.cli_jobs,
                    ),
                )
            )
        finally:
            if head is not None:
                stop(head)

    print(f"{n} jobs each; milliseconds")
    print("| backend | what | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for backend, what, ms in rows:
        p50, p95 = summary(ms)
        print(f"| {backend} | {what} | {p50:.1f} | {p95:.1f} |")
    for backend, why in skipped.items():
        print(f"skipped {backend}: {why}")
    write_figures(args, rows, skipped)


PEERS = {
    "local process": "raw: subprocess.Popen(['true'])",
    "Slurm": "raw: sbatch + scontrol show job",
    "Ray": "raw: JobSubmissionClient.submit_job",
}


def write_figures(
    args: argparse.Namespace, rows: list[tuple[str, str, list[float]]], skipped: dict[str, str]
) -> None:
    from _common import figure, write_json

    by = {(backend, what): summary(ms) for backend, what, ms in rows}
    figures = []
    for backend, peer in PEERS.items():
        if (backend, "Charter: submit + first status") not in by:
            continue
        p50, p95 = by[(backend, "Charter: submit + first status")]
        peer_p50, peer_p95 = by[(backend, peer)]
        figures.append(
            figure(
                f"{backend}: Charter submit + first status, p50",
                p50,
                "ms",
                peer=peer.removeprefix("raw: ") + ", p50",
                peer_value=peer_p50,
                note=f"p95 {p95:.1f} ms (peer {peer_p95:.1f} ms); "
                f"Charter adds {p50 - peer_p50:.1f} ms",
            )
        )
    for (backend, what), (p50, p95) in by.items():
        if what.startswith("raw") and PEERS.get(backend) != what:
            figures.append(figure(f"{backend}: {what}, p50", p50, "ms", note=f"p95 {p95:.1f} ms"))
    write_json(args, bench="retraining", figures=figures, skipped=skipped)


if __name__ == "__main__":
    main()
