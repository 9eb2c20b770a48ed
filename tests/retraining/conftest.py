"""Fixtures for the retraining tests: a real single-node Slurm (scripts/slurm-up.sh), a real
local Ray head, and executor settings pointing at them.

The clusters run only while the tests that need them do: the Slurm daemons this session
started are stopped at its end, the Ray head when the module using it is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SRC = ROOT / "client" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))


def _alive(pidfile: str) -> int | None:
    try:
        pid = int(Path(pidfile).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """A running single-node Slurm with one GPU gres, set up by the project's own script."""
    already = {d: _alive(f"/run/{d}.pid") for d in ("slurmctld", "slurmd")}
    result = subprocess.run(
        [str(ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"scripts/slurm-up.sh failed:\n{result.stdout}\n{result.stderr}"
    yield result.stdout.strip()
    for daemon in ("slurmd", "slurmctld"):  # stop what this session started
        pid = _alive(f"/run/{daemon}.pid")
        if pid is not None and already[daemon] is None:
            os.kill(pid, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_up(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """``ray start --head`` on free ports (never Redis's 6379), declaring one GPU; its whole
    process group is stopped afterwards (not ``ray stop``, which would stop every Ray on the
    host)."""
    port, dashboard = free_port(), free_port()
    while port == 6379 or dashboard in (6379, port):
        port, dashboard = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="charter-ray-", dir="/tmp")
    ray = Path(sys.executable).with_name("ray")
    log = open(Path(temp) / "head.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(ray),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=4",
            "--num-gpus=1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while not _ray_up(url):
            assert proc.poll() is None, (Path(temp) / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not come up in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def executors_setting(**extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "local": {"class": "workers.executors.local.LocalExecutor", "options": {}},
        **extra,
    }
