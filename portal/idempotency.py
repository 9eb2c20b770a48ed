"""``Idempotency-Key`` for API writes: a retried request is answered, not repeated.

A POST, PUT, PATCH or DELETE under ``/api/`` that carries an ``Idempotency-Key``
header is recorded before it runs (one row per caller and key). When the same
caller sends the same key again:

- with the same method, path and body, and the first request has finished, the
  stored response is replayed (header ``Idempotent-Replayed: true``) and nothing
  is written again;
- while the first is still running: 409, try again shortly;
- with a different request: 422 naming ``Idempotency-Key``.

Responses with a 5xx status are not kept (the retry runs afresh). A record left
pending by a crashed worker is given up after ``CHARTER_IDEMPOTENCY_PENDING_SECONDS``.
Records expire after ``CHARTER_IDEMPOTENCY_TTL_HOURS`` (a Celery beat task).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from portal.models import IdempotencyRecord

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 200


def _principal(request: HttpRequest) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth:
        return hashlib.sha256(auth.encode()).hexdigest()
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return hashlib.sha256(f"session-user:{user.pk}".encode()).hexdigest()
    return None


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse(
        {"detail": message, "errors": {"Idempotency-Key": [message]}}, status=status
    )


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get("Idempotency-Key", "")
        if not key or request.method not in WRITE_METHODS or not request.path.startswith("/api/"):
            return self.get_response(request)
        if len(key) > MAX_KEY_LENGTH:
            return _error(400, f"must be at most {MAX_KEY_LENGTH} characters")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.CHARTER_MAX_BODY_BYTES:
            # large uploads are not held in memory to be hashed; their natural keys
            # (e.g. dataset + version) turn a repeat into a 409 instead
            return self.get_response(request)
        principal = _principal(request)
        if principal is None:
            return self.get_response(request)  # unauthenticated: the view answers 401
        digest = hashlib.sha256(
            b"%s %s\n" % (request.method.encode(), request.get_full_path().encode()) + request.body
        ).hexdigest()
        record_id = _claim(principal, key, digest)
        if record_id is None:
            record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
            if record is not None:
                answer = self._repeat(request, record, digest)
                if answer is not None:
                    return answer
            # the earlier record was abandoned (deleted above) or has just expired
            record_id = _claim(principal, key, digest)
            if record_id is None:  # a concurrent request with the same key got there first
                return _busy()
        return self._run(request, record_id)

    def _repeat(
        self, request: HttpRequest, record: IdempotencyRecord, digest: str
    ) -> HttpResponse | None:
        if record.request_sha256 != digest:
            return _error(422, "this key was used for a different request")
        if record.completed_at is not None:
            response = HttpResponse(
                bytes(record.body), status=record.status_code, content_type=record.content_type
            )
            response["Idempotent-Replayed"] = "true"
            return response
        pending = timedelta(seconds=settings.CHARTER_IDEMPOTENCY_PENDING_SECONDS)
        if record.created_at > timezone.now() - pending:
            return _busy()
        record.delete()  # abandoned by a crashed worker: run the request again
        return None

    def _run(self, request: HttpRequest, record_id: int) -> HttpResponse:
        records = IdempotencyRecord.objects.filter(pk=record_id)
        try:
            response = self.get_response(request)
        except BaseException:
            records.delete()
            raise
        if response.status_code >= 500 or getattr(response, "streaming", False):
            records.delete()
            return response
        records.update(
            status_code=response.status_code,
            content_type=response.get("Content-Type", ""),
            body=response.content,
            completed_at=timezone.now(),
        )
        return response


def _busy() -> JsonResponse:
    response = _error(409, "a request with this key is still being processed")
    response["Retry-After"] = "1"
    return response


def _claim(principal: str, key: str, digest: str) -> int | None:
    """Insert the pending record in one statement; None when the key is already taken.

    ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL, SQLite 3.35+) needs
    no transaction of its own and no savepoint to survive the conflict: a first request
    costs one statement here, a retry one more to read the stored answer.
    """
    qn = connection.ops.quote_name
    meta = IdempotencyRecord._meta
    columns = ", ".join(
        qn(meta.get_field(name).column)
        for name in ("principal", "key", "request_sha256", "content_type", "body", "created_at")
    )
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES (%s, %s, %s, '', %s, %s) "  # noqa: S608
        f"ON CONFLICT ({qn('principal')}, {qn('key')}) DO NOTHING RETURNING {qn('id')}"
    )
    with connection.cursor() as cursor:
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cursor.execute(sql, [principal, key, digest, b"", now])
        row = cursor.fetchone()
    return int(row[0]) if row else None


def purge_expired(now: object = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(hours=settings.CHARTER_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
