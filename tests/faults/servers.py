"""Private servers for the fault tests: a PostgreSQL cluster, a Redis and a Charter portal
process, each on a free port of its own, so that a test may stop, kill or restart them
without touching the shared PostgreSQL (5432) and Redis (6379) the rest of the suite uses."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---------------------------------------------------------------- PostgreSQL


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb, trust auth) in a temporary directory.

    PostgreSQL refuses to run as root: when the tests run as root the cluster belongs to the
    ``postgres`` OS user and its commands run through ``runuser``."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        bindir = Path(found[-1]).parent if found else Path(shutil.which("pg_ctl") or "").parent
        if not (bindir / "initdb").exists():
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="charter-faults-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}\n{tail}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=60"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def restart(self, down_for: float = 0.0) -> None:
        """A fast restart: open sessions are terminated, in-flight transactions roll back.

        (``pg_ctl restart`` would forget the log file and keep our pipes open.)"""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


# ---------------------------------------------------------------- Redis


class PrivateRedis:
    """A redis-server on a free port with no persistence: a restart loses what it held, as
    a broker without AOF does in production."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="charter-faults-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_until(lambda: port_open(self.port), 20, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGKILL)
            self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the portal


def charter_env(**extra: str) -> dict[str, str]:
    """The environment of a Charter process started by a test (no key or broker inherited)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHARTER_SIGNING_KEY", "PYTEST", "DJANGO_SETTINGS"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "false",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_script(code: str, env: dict[str, str], timeout: float = 120) -> Any:
    """Run Python ``code`` inside Django (in a child process with ``env``); it must ``print``
    one JSON document as its last line, which is returned."""
    prelude = "import django, json\ndjango.setup()\n"
    result = subprocess.run(
        [PYTHON, "-c", prelude + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"script failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class PortalServer:
    """``gunicorn portal.wsgi`` (the production server) in a child process."""

    def __init__(self, env: dict[str, str], log: Path, *, threads: int = 8) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = log
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str = "/login/") -> None:
        out = open(self.log, "wb")  # noqa: SIM115 - the child keeps it open
        gunicorn = Path(PYTHON).with_name("gunicorn")
        self.proc = subprocess.Popen(
            [
                str(gunicorn), "portal.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                "--workers", "1", "--threads", str(self.threads), "--timeout", "120",
                "--graceful-timeout", "5", "--access-logfile", "-",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        out.close()

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the portal exited:\n{self.output()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=2):  # noqa: S310
                    return True
            except urllib.error.HTTPError:
                return True  # it answers
            except OSError:
                return False

        wait_until(answers, 60, "the portal")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
