"""Supervisor of one local job (standard library only; started by LocalExecutor).

``python -m workers.executors._local_runner WORKDIR`` detaches itself (double fork, new
session), starts the job's command in its own process group with its output in
``WORKDIR/output.log``, enforces the time limit, forwards SIGTERM to the job's process group
(then SIGKILL after a grace period) and writes ``exit_code`` when the job ends. Every fact is a
file in WORKDIR, so whoever asks later (another Celery worker, after a restart) can tell.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def main(workdir: Path) -> int:
    spec = json.loads((workdir / "job.json").read_text())
    env = {**os.environ, **spec.get("env", {})}
    secrets_file = workdir / "secrets.json"
    if secrets_file.exists():
        env.update(json.loads(secrets_file.read_text()))
        secrets_file.unlink()  # the token lives only in the job's environment from now on
    grace = float(spec.get("grace_s", 10))
    limit = float(spec.get("time_limit_s") or 0) or None
    with open(workdir / "output.log", "ab", buffering=0) as log:
        child = subprocess.Popen(  # noqa: S603 - the job's own command
            spec["command"],
            cwd=spec.get("cwd") or workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _write(workdir / "pid", str(child.pid))
    stopping = {"at": None}

    def on_term(signum: int, frame: object) -> None:
        stopping["at"] = stopping["at"] or time.monotonic()
        _killpg(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    started = time.monotonic()
    code = None
    while code is None:
        try:
            code = child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            if limit is not None and stopping["at"] is None and now - started > limit:
                _write(workdir / "timed_out", f"{limit:g}")
                stopping["at"] = now
                _killpg(child.pid, signal.SIGTERM)
            if stopping["at"] is not None and now - stopping["at"] > grace:
                _killpg(child.pid, signal.SIGKILL)
    _killpg(child.pid, signal.SIGKILL)  # stragglers of its process group
    _write(workdir / "exit_code", str(code))
    return 0


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if os.fork() > 0:  # the first parent returns at once to LocalExecutor.submit
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    _write(target / "runner.pid", str(os.getpid()))
    try:
        sys.exit(main(target))
    except Exception as exc:  # noqa: BLE001 - record why, then fail
        with open(target / "output.log", "a") as fh:
            fh.write(f"\n[charter runner] {type(exc).__name__}: {exc}\n")
        _write(target / "exit_code", "127")
        sys.exit(1)
