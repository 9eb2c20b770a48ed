"""Retraining executors (issue 7): the overhead of submit + first status per backend, beside
the backend's own submission on the same machine.

    .venv/bin/python bench/retraining_bench.py [--jobs 20] [--ray-address http://…:8265]

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
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--ray-address", default="")
    parser.add_argument("--skip", nargs="*", default=[], choices=["local", "slurm", "ray"])
    args = parser.parse_args()
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

        subprocess.run([str(ROOT / "scripts" / "slurm-up.sh")], check=True, capture_output=True)
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
                        n,
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


if __name__ == "__main__":
    main()
