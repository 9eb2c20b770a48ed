"""Prometheus metrics, added up over every process of a host.

gunicorn runs several web processes and Celery workers are processes of their own, so
counters and histograms live in prometheus_client's multiprocess mode: each process writes
its values to files under ``settings.PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them
up at scrape time. Figures that are state rather than events (queue depth, the audit
chain's length, the last checkpoint) are read from the broker and the database at scrape
time by :class:`StateCollector`.

Events are counted where they happen, after their transaction commits:

* HTTP requests — :class:`RequestMetricsMiddleware` (latency by view, method, status);
* Celery tasks — the ``task_*`` signals, in the worker process that ran the task;
* telemetry batches accepted and folded, drift computations — ``post_save`` of
  ``workers.TelemetryBatch`` and ``workers.DriftResult``, whichever path saved them.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery import signals as celery_signals
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)


def _multiproc_dir() -> Path | None:
    """The shared folder, or None (with a warning) where this process cannot write it."""
    path = Path(settings.PROMETHEUS_MULTIPROC_DIR)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("metrics: %s unusable (%s); counting in this process only", path, exc)
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        log.warning("metrics: %s is not writable; counting in this process only", path)
        return None
    return path


# The value class is chosen when prometheus_client is first imported, from this variable;
# set it first, and switch the class if some library imported prometheus_client earlier.
MULTIPROC_DIR = _multiproc_dir()
if MULTIPROC_DIR is not None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(MULTIPROC_DIR)

from prometheus_client import (  # noqa: E402  (after the variable above)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

if MULTIPROC_DIR is not None and not getattr(values.ValueClass, "_multiprocess", False):
    values.ValueClass = values.MultiProcessValue()

HTTP_LATENCY = Histogram(
    "charter_http_request_duration_seconds",
    "Time to answer an HTTP request, by view name, method and status code.",
    ["view", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TASKS = Counter(
    "charter_celery_tasks",
    "Celery task executions by task name and outcome (success, failure, retry, revoked).",
    ["task", "state"],
)
TASK_DURATION = Histogram(
    "charter_celery_task_duration_seconds",
    "Run time of Celery tasks, by task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0),
)
TELEMETRY_BATCHES = Counter(
    "charter_telemetry_batches_accepted",
    "Telemetry batches accepted at intake (replays of an idempotency key not counted).",
    ["kind"],
)
TELEMETRY_ROWS = Counter(
    "charter_telemetry_rows_accepted",
    "Telemetry rows (events) in the accepted batches.",
    ["kind"],
)
TELEMETRY_FOLDED = Counter(
    "charter_telemetry_batches_folded",
    "Telemetry batches folded into their window by a worker, by outcome (folded, failed).",
    ["outcome"],
)
DRIFT = Counter(
    "charter_drift_computations",
    "Drift results computed for a telemetry window, by the dataset-level verdict.",
    ["dataset_drift"],
)
_ALL = (
    HTTP_LATENCY,
    TASKS,
    TASK_DURATION,
    TELEMETRY_BATCHES,
    TELEMETRY_ROWS,
    TELEMETRY_FOLDED,
    DRIFT,
)


# ------------------------------------------------------------------ HTTP


def _view_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unresolved>"  # 404s for unknown paths, and answers before URL resolution
    return match.view_name or match.route or "<unnamed>"


class RequestMetricsMiddleware:
    """Observe each request's latency, labelled by the view's name (bounded cardinality)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            HTTP_LATENCY.labels(_view_label(request), request.method or "", str(status)).observe(
                time.perf_counter() - start
            )


# ------------------------------------------------------------------ Celery tasks

_started: dict[str, float] = {}


def _task_name(sender: Any, request: Any = None) -> str:
    name = getattr(sender, "name", None)
    if name is None and request is not None:
        name = getattr(request, "task", None) or getattr(request, "name", None)
    return str(name or "unknown")


@celery_signals.task_prerun.connect(weak=False)
def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@celery_signals.task_postrun.connect(weak=False)
def _on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    start = _started.pop(task_id or "", None)
    if start is not None:
        TASK_DURATION.labels(_task_name(sender)).observe(time.perf_counter() - start)


@celery_signals.task_success.connect(weak=False)
def _on_success(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_task_name(sender), "success").inc()


@celery_signals.task_failure.connect(weak=False)
def _on_failure(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_task_name(sender), "failure").inc()


@celery_signals.task_retry.connect(weak=False)
def _on_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    TASKS.labels(_task_name(sender, request), "retry").inc()


@celery_signals.task_revoked.connect(weak=False)
def _on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    TASKS.labels(_task_name(sender, request), "revoked").inc()


# ------------------------------------------------------------------ telemetry and drift


def _on_batch_saved(
    sender: Any, instance: Any, created: bool, update_fields: Any, **_: Any
) -> None:
    if created:
        kind, rows = str(instance.kind), int(instance.rows or 0)

        def accepted() -> None:
            TELEMETRY_BATCHES.labels(kind).inc()
            TELEMETRY_ROWS.labels(kind).inc(rows)

        transaction.on_commit(accepted)
    elif update_fields and "folded_at" in update_fields and instance.folded_at is not None:
        outcome = "failed" if "error" in (instance.result or {}) else "folded"
        transaction.on_commit(lambda: TELEMETRY_FOLDED.labels(outcome).inc())


def _on_drift_saved(sender: Any, instance: Any, **_: Any) -> None:
    verdict = "true" if instance.dataset_drift else "false"
    transaction.on_commit(lambda: DRIFT.labels(verdict).inc())


post_save.connect(_on_batch_saved, sender="workers.TelemetryBatch", weak=False)
post_save.connect(_on_drift_saved, sender="workers.DriftResult", weak=False)


# ------------------------------------------------------------------ state read at scrape


def _queue_names() -> list[str]:
    from portal.celery import app

    names = [str(app.conf.task_default_queue or "celery")]
    for queue in app.conf.task_queues or ():
        name = getattr(queue, "name", None) or str(queue)
        if name not in names:
            names.append(name)
    return names


def queue_depths(timeout: float = 2.0) -> dict[str, int]:
    """Messages waiting in each Celery queue (not those a worker has already taken)."""
    from portal.celery import app

    url = str(app.conf.broker_url)
    names = _queue_names()
    if url.startswith(("redis://", "rediss://")):
        import redis
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        options = app.conf.broker_transport_options or {}
        steps = options.get("priority_steps", PRIORITY_STEPS)
        sep = options.get("sep", Channel.sep)
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            pipe = client.pipeline()
            keys = {
                name: [name if not pri else f"{name}{sep}{pri}" for pri in steps] for name in names
            }
            for name in names:
                for key in keys[name]:
                    pipe.llen(key)
            counts = iter(pipe.execute())
            return {name: sum(next(counts) for _ in keys[name]) for name in names}
        finally:
            client.close()
    from kombu.exceptions import ChannelError

    depths: dict[str, int] = {}
    with app.connection_for_read(connect_timeout=timeout) as conn:
        conn.connect()
        channel = conn.channel()
        try:
            for name in names:
                try:
                    depths[name] = int(channel.queue_declare(queue=name, passive=True)[1])
                except ChannelError:  # not declared yet: nothing was ever sent to it
                    depths[name] = 0
        finally:
            channel.close()
    return depths


def audit_figures() -> dict[str, float | None]:
    """The audit chain's length and the last signed checkpoint (two indexed lookups)."""
    from django.db.models import Max

    from audits.models import AuditEvent, Checkpoint, Segment

    head = AuditEvent.objects.aggregate(seq=Max("seq"))["seq"]
    if head is None:  # every event archived (or none yet)
        head = Segment.objects.aggregate(seq=Max("last_seq"))["seq"]
    last = Checkpoint.objects.order_by("-seq", "-id").values("seq", "created_at").first()
    return {
        "length": float(head or 0),
        "checkpoint_seq": float(last["seq"]) if last else None,
        "checkpoint_time": last["created_at"].timestamp() if last else None,
    }


class StateCollector:
    """Gauges computed at scrape time; a failing source is reported, not fatal."""

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "charter_metrics_source_up",
            "1 if the scrape could read this source (broker, database), else 0.",
            labels=["source"],
        )
        try:
            depths = queue_depths()
        except Exception as exc:
            log.warning("metrics: cannot read the broker's queue depth: %s", exc)
            errors.add_metric(["broker"], 0)
        else:
            errors.add_metric(["broker"], 1)
            depth = GaugeMetricFamily(
                "charter_celery_queue_depth",
                "Messages waiting in the Celery queue (read from the broker at scrape).",
                labels=["queue"],
            )
            for name, count in depths.items():
                depth.add_metric([name], count)
            yield depth
        try:
            audit = audit_figures()
        except Exception as exc:
            log.warning("metrics: cannot read the audit chain: %s", exc)
            errors.add_metric(["database"], 0)
        else:
            errors.add_metric(["database"], 1)
            yield GaugeMetricFamily(
                "charter_audit_chain_length",
                "Events in the audit hash chain (the head's sequence number).",
                value=audit["length"],
            )
            if audit["checkpoint_time"] is not None:
                yield GaugeMetricFamily(
                    "charter_audit_last_checkpoint_timestamp_seconds",
                    "When the last signed checkpoint of the chain head was made (Unix time).",
                    value=audit["checkpoint_time"],
                )
                yield GaugeMetricFamily(
                    "charter_audit_seconds_since_checkpoint",
                    "Seconds since the last signed checkpoint.",
                    value=max(0.0, time.time() - audit["checkpoint_time"]),
                )
                yield GaugeMetricFamily(
                    "charter_audit_events_since_checkpoint",
                    "Audit events written after the last signed checkpoint.",
                    value=max(0.0, audit["length"] - (audit["checkpoint_seq"] or 0)),
                )
        yield errors


def render() -> bytes:
    """The exposition text: every process's counters plus the state read now."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROC_DIR is not None:
        MultiProcessCollector(registry, path=str(MULTIPROC_DIR))
    else:  # this process's own counters only
        registry.register(_Own())  # type: ignore[arg-type]
    registry.register(StateCollector())  # type: ignore[arg-type]
    return generate_latest(registry)


class _Own:
    """This process's metrics (single-process fallback)."""

    def collect(self) -> Iterator[Metric]:
        for metric in _ALL:
            yield from metric.collect()


# ------------------------------------------------------------------ access


def _direct(request: HttpRequest) -> bool:
    """True unless a proxy forwarded the request (then REMOTE_ADDR is the proxy's)."""
    meta = request.META
    return not any(h in meta for h in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"))


def _address_allowed(request: HttpRequest) -> bool:
    try:
        addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if addr in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            log.warning("METRICS_ALLOWED_IPS: %r is not an address or network", entry)
    return False


def token_allowed(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not supplied:
        return False
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


def allowed_without_session(request: HttpRequest) -> bool:
    """The scraper's ways in: the bearer token, or a direct request from an allowed address."""
    return token_allowed(request) or (_direct(request) and _address_allowed(request))


def _staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff and user.is_active)


def exposition() -> HttpResponse:
    response = HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus text format, for the scraper or a staff user only."""
    if request.method not in ("GET", "HEAD"):
        return JsonResponse({"detail": "Method not allowed."}, status=405)
    if not (allowed_without_session(request) or _staff(request)):
        return JsonResponse(
            {
                "detail": "Metrics are restricted: send the bearer token (METRICS_TOKEN), "
                "sign in as staff, or scrape from an address in METRICS_ALLOWED_IPS."
            },
            status=403,
        )
    return exposition()
