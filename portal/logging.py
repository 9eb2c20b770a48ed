"""Structured logs: every line carries the request id that the audit events carry.

``settings.LOGGING`` puts :class:`ContextFilter` on the console handler and picks
:class:`JsonFormatter` (``LOG_FORMAT=json``: one JSON object per line) or
:class:`TextFormatter`. The filter adds to each record, where known:

* ``request_id`` — the current audit context's id (:mod:`audits.context`): inside a request,
  the id in the ``X-Request-ID`` response header and on every audit event the request wrote;
  inside a task body, the id its audit events carry;
* ``user`` (once authenticated), ``token_id``, ``client_ip``, ``channel``;
* in a Celery task: ``task_id``, ``task_name`` and ``parent_request_id`` (the request that
  enqueued the task, carried in a message header by :func:`stamp_request_id`).

:class:`AccessLogMiddleware` writes one line per request on the ``charter.request`` logger
with ``method``, ``path``, ``view``, ``status`` and ``duration_ms``.

(This module is ``portal.logging``; inside the package ``import logging`` still means the
standard library, imports being absolute.)
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibJsonFormatter

from audits import context

access_log = logging.getLogger("charter.request")

#: Message header that carries the enqueuing request's id to a task.
REQUEST_HEADER = "charter_request_id"

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "charter_log_request", default=None
)
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics", "/static/")


def _username(request: HttpRequest) -> str:
    """The user's name if authentication already happened; never triggers it (no query)."""
    user = request.__dict__.get("user")
    if user is None:
        return ""
    if isinstance(user, SimpleLazyObject):
        user = user._wrapped  # type: ignore[attr-defined]
        if user is empty:
            return ""
    if getattr(user, "is_authenticated", False):
        return str(user.get_username())
    return ""


def _current_task() -> Any:
    import sys

    if "celery" not in sys.modules:  # a process that never loaded Celery runs no task
        return None
    from celery import current_task

    task = current_task._get_current_object()
    return task if task is not None and getattr(task, "request", None) is not None else None


def task_fields() -> dict[str, str]:
    """``task_id``, ``task_name``, ``parent_request_id`` of the running task (or nothing)."""
    task = _current_task()
    if task is None or not task.request.id:
        return {}
    fields = {"task_id": str(task.request.id), "task_name": str(task.name)}
    parent = getattr(task.request, REQUEST_HEADER, None)
    if parent is None and isinstance(task.request.headers, dict):
        parent = task.request.headers.get(REQUEST_HEADER)
    if parent:
        fields["parent_request_id"] = str(parent)
    return fields


class ContextFilter(logging.Filter):
    """Add the request and task context to every record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        request = _request.get()
        logged = getattr(record, "request", None)  # django.request's 4xx/5xx lines, after
        if isinstance(logged, HttpRequest):  # the request's own context has closed
            request = logged
            for key, attr in (("method", "method"), ("path", "path")):
                if not hasattr(record, key):
                    setattr(record, key, getattr(logged, attr, ""))
        record.request_id = (
            getattr(record, "request_id", "")
            or ctx.request_id
            or getattr(request, "request_id", "")
        )
        if request is not None and not hasattr(record, "user"):
            user = _username(request)
            if user:
                record.user = user
        if ctx.token_id is not None:
            record.token_id = ctx.token_id
        if ctx.client_ip and not hasattr(record, "client_ip"):
            record.client_ip = ctx.client_ip
        if ctx.request_id:
            record.channel = ctx.channel
        for key, value in task_fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(_LibJsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, context."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "{levelname}{name}{message}")
        kwargs.setdefault("style", "{")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        # django.request passes the request object along; its id, method and path are
        # taken from it by ContextFilter, the object itself is not for a log line.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request"])
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)


_TEXT_CONTEXT = ("request_id", "user", "task_id", "parent_request_id")


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal: ``time level logger [request_id=… user=…] message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{k}={getattr(record, k)}" for k in _TEXT_CONTEXT if getattr(record, k, "")]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    return match.view_name or match.route or ""


class AccessLogMiddleware:
    """One line per request (``charter.request``): method, path, view, status, duration.

    Successful probes, scrapes and static files log at DEBUG so that a scraper polling every
    few seconds does not drown the log; their refusals and failures log like any request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        start = time.perf_counter()
        try:
            response = self.get_response(request)
        except Exception:
            self._log(request, 500, start)
            raise
        finally:
            _request.reset(token)
        self._log(request, response.status_code, start)
        return response

    def _log(self, request: HttpRequest, status: int, start: float) -> None:
        duration_ms = round((time.perf_counter() - start) * 1000, 2)
        level = logging.INFO
        if status >= 500:
            level = logging.ERROR
        elif status < 400 and request.path.startswith(_QUIET_PATHS):
            level = logging.DEBUG
        if not access_log.isEnabledFor(level):
            return
        extra = {
            "method": request.method,
            "path": request.path,
            "view": _view_name(request),
            "status": status,
            "duration_ms": duration_ms,
            "user": _username(request),
        }
        access_log.log(
            level,
            "%s %s %s %.1fms",
            request.method,
            request.path,
            status,
            duration_ms,
            extra=extra,
        )


def stamp_request_id(headers: dict[str, Any] | None, **_: Any) -> None:
    """Celery ``before_task_publish``: put the current request's id on the message."""
    if headers is None:
        return
    request_id = context.current().request_id
    if request_id and REQUEST_HEADER not in headers:
        headers[REQUEST_HEADER] = request_id
