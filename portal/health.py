"""Liveness and readiness probes.

* ``GET /healthz`` — liveness: the process answers. No dependency is touched, so a database
  outage does not get every web process restarted.
* ``GET /readyz`` — readiness: the database answers ``SELECT 1``, its migrations are all
  applied, the Celery broker accepts a connection, and the portal's signing key loads and
  signs. 200 when every check passes, 503 otherwise; each check reports its status, its
  latency and, when it failed, why (without URLs, hosts' passwords or key material).

Both are unauthenticated. :class:`ProbeMiddleware` answers them ahead of the host check and
the HTTPS redirect (a kubelet probes the pod's IP over plain HTTP), and does the same for
``/metrics`` when the scraper brings the bearer token or scrapes from an allowed address.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import load_backend
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.csp import build_policy

Check = Callable[[float], dict[str, Any]]

log = logging.getLogger(__name__)

# Once every migration is applied it stays so for this process (a deploy restarts it).
_migrations_ok = False
_last_failing: list[str] = []


def _secrets() -> list[str]:
    """Values that must never appear in an answer."""
    from portal.celery import app

    found = [str(settings.DATABASES[DEFAULT_DB_ALIAS].get("PASSWORD") or "")]
    match = re.match(r"^[a-z0-9+]+://(?:[^:@/]*:)?([^@/]*)@", str(app.conf.broker_url or ""))
    if match:
        found.append(match.group(1))
    return [s for s in found if len(s) >= 3]


def _scrub(message: str) -> str:
    message = re.sub(r"([a-z0-9+]+://)[^@/\s]*@", r"\1***@", message)  # user:pass@ in URLs
    for secret in _secrets():
        message = message.replace(secret, "***")
    return message[:500]


def _private_connection() -> Any:
    """A new connection to the default database (never the request's), with short timeouts."""
    base = connections[DEFAULT_DB_ALIAS].settings_dict
    options = dict(base.get("OPTIONS") or {})
    if base["ENGINE"] in ("django.db.backends.postgresql", "portal.db.postgresql"):
        options["connect_timeout"] = max(1, int(settings.CHARTER_READINESS_TIMEOUT_S))
    backend = load_backend(base["ENGINE"])
    return backend.DatabaseWrapper({**base, "OPTIONS": options}, DEFAULT_DB_ALIAS)


def check_database(timeout: float) -> dict[str, Any]:
    conn = _private_connection()
    try:
        with conn.cursor() as cursor:
            if conn.vendor == "postgresql":
                cursor.execute("SET statement_timeout = %s", [int(timeout * 1000)])
            cursor.execute("SELECT 1")
            row = cursor.fetchone()
        if row is None or row[0] != 1:
            raise RuntimeError(f"SELECT 1 returned {row!r}")
        return {"vendor": conn.vendor}
    finally:
        conn.close()


def check_migrations(timeout: float) -> dict[str, Any]:
    global _migrations_ok
    if _migrations_ok:
        return {"unapplied": 0}
    from django.db.migrations.executor import MigrationExecutor

    conn = _private_connection()
    try:
        executor = MigrationExecutor(conn)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    finally:
        conn.close()
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        raise RuntimeError(f"{len(plan)} migrations not applied: {names}{more}")
    _migrations_ok = True
    return {"unapplied": 0}


def check_broker(timeout: float) -> dict[str, Any]:
    from portal.celery import app

    url = str(app.conf.broker_url or "")
    transport = url.split("://", 1)[0] if "://" in url else url
    if transport in ("redis", "rediss"):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    elif transport == "filesystem":
        options = app.conf.broker_transport_options or {}
        for key in ("data_folder_in", "data_folder_out"):
            folder = Path(options.get(key) or ".")
            if not folder.is_dir():
                raise RuntimeError(f"the broker's {key} folder does not exist")
            if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
                raise RuntimeError(f"the broker's {key} folder is not writable")
    else:
        with app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    return {"transport": transport}


def check_signing_key(timeout: float) -> dict[str, Any]:
    from portal.keys import portal_key

    key = portal_key()  # SigningKeyUnavailable names the variable and the problem
    probe = b"charter readiness probe"
    key.public.verify(key.sign(probe), probe)
    return {"key_id": key.key_id}


CHECKS: dict[str, Check] = {
    "database": check_database,
    "migrations": check_migrations,
    "broker": check_broker,
    "signing_key": check_signing_key,
}


def _timed(check: Check, timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        detail = check(timeout)
        result: dict[str, Any] = {"status": "ok", **detail}
    except Exception as exc:
        result = {"status": "fail", "error": _scrub(f"{type(exc).__name__}: {exc}")}
    result["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return result


def readiness(timeout: float | None = None) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run every check at once, each bounded by ``timeout``; (all ok, per-check results)."""
    timeout = float(timeout or settings.CHARTER_READINESS_TIMEOUT_S)
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    try:
        futures = {name: pool.submit(_timed, check, timeout) for name, check in CHECKS.items()}
        deadline = time.monotonic() + timeout + 0.5
        results: dict[str, dict[str, Any]] = {}
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                results[name] = {
                    "status": "fail",
                    "error": f"no answer within {timeout:g} s",
                    "latency_ms": round(timeout * 1000, 2),
                }
    finally:
        pool.shutdown(wait=False)  # a hung check must not hold the answer
    return all(r["status"] == "ok" for r in results.values()), results


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process is up and answering."""
    return _no_store(JsonResponse({"status": "ok"}))


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: every dependency answers; 503 naming the failing checks otherwise."""
    global _last_failing
    ok, checks = readiness()
    failing = sorted(name for name, r in checks.items() if r["status"] != "ok")
    if failing != _last_failing:  # log changes, not every probe of a lasting outage
        if failing:
            reasons = "; ".join(f"{name}: {checks[name]['error']}" for name in failing)
            log.warning("not ready: %s", reasons)
        else:
            log.info("ready again")
        _last_failing = failing
    body = {"status": "ok" if ok else "fail", "failing": failing, "checks": checks}
    response = JsonResponse(body, status=200 if ok else 503)
    response._has_been_logged = True  # type: ignore[attr-defined]  (not django.request's ERROR)
    return _no_store(response)


class ProbeMiddleware:
    """Answer probes (and an authorised scraper) before host validation and HTTPS redirects."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if request.method in ("GET", "HEAD"):
            if path == "/healthz":
                return _hardened(healthz(request))
            if path == "/readyz":
                return _hardened(readyz(request))
            if path == "/metrics":
                from portal import metrics

                if metrics.allowed_without_session(request):
                    return _hardened(metrics.exposition())
        return self.get_response(request)


def _hardened(response: HttpResponse) -> HttpResponse:
    """The security headers the middleware these answers skip would have set."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
    response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
    response.headers.setdefault(
        "Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    )
    response.headers.setdefault("Content-Security-Policy", build_policy(settings.SECURE_CSP))
    return response
