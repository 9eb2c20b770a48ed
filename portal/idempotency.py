"""``Idempotency-Key`` for API writes: a retried request is answered, not repeated.

A POST, PUT, PATCH or DELETE under ``/api/`` that carries an ``Idempotency-Key``
header is recorded before it runs (one row per caller and key). When the same
caller sends the same key again:

- with the same method, path and body, and the first request has finished, the
  stored response is replayed (header ``Idempotent-Replayed: true``) and nothing
  is written again;
- while the first is still running: 409, try again shortly;
- with a different request: 422 naming ``Idempotency-Key``.

Responses with a 5xx status are not kept (the retry runs afresh, and what the failed
request wrote is rolled back with it). The record, the request's writes and the stored
response commit in one transaction; a record found pending (written by an older version)
is given up after ``CHARTER_IDEMPOTENCY_PENDING_SECONDS``.
Records expire after ``CHARTER_IDEMPOTENCY_TTL_HOURS`` (a Celery beat task).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
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
        record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
        if record is not None:
            return self._repeat(request, record, digest) or self._run(
                request, principal, key, digest
            )
        return self._run(request, principal, key, digest)

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
            response = _error(409, "a request with this key is still being processed")
            response["Retry-After"] = "1"
            return response
        record.delete()  # abandoned by a crashed worker: run the request again
        return None

    def _run(self, request: HttpRequest, principal: str, key: str, digest: str) -> HttpResponse:
        # The record, the request's writes and the stored answer commit together: a request
        # that dies half-way (its worker killed, the database restarted) leaves neither data
        # nor a record stuck "pending", and a retry can never find the data written but the
        # answer lost. A concurrent request with the same key waits on the record's unique
        # index until this one commits (then replays it) or rolls back (then runs itself).
        with transaction.atomic():
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        principal=principal, key=key, request_sha256=digest
                    )
            except IntegrityError:  # the same key, committed meanwhile by a concurrent request
                found = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
                if found is not None:
                    return self._repeat(request, found, digest) or _error(
                        409, "a request with this key is still being processed"
                    )
                response = _error(409, "a request with this key is still being processed")
                response["Retry-After"] = "1"
                return response
            response = self.get_response(request)
            if response.status_code >= 500:
                transaction.set_rollback(True)  # not kept: the retry runs afresh
                return response
            if getattr(response, "streaming", False):
                record.delete()
                return response
            IdempotencyRecord.objects.filter(pk=record.pk).update(
                status_code=response.status_code,
                content_type=response.get("Content-Type", ""),
                body=response.content,
                completed_at=timezone.now(),
            )
        return response


def purge_expired(now: object = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(hours=settings.CHARTER_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
