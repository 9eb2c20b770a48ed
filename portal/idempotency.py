"""``Idempotency-Key`` for API writes: a retried request is answered, not repeated.

A POST, PUT, PATCH or DELETE under ``/api/`` that carries an ``Idempotency-Key``
header runs in one transaction with the record of its key and answer (one row per
caller and key). When the same caller sends the same key again:

- with the same method, path and body, after the first request committed: the stored
  response is replayed (header ``Idempotent-Replayed: true``) and nothing is written
  again;
- while the first is still running: the repeat waits for it on the key's unique index,
  then its own writes are rolled back and the first's answer is replayed;
- with a different request: 422 naming ``Idempotency-Key``.

Responses with a 5xx status are not kept (the retry runs afresh, and what the failed
request wrote is rolled back with it). A record found pending (written by an older
version, which claimed keys before running) answers 409 while it is recent and is given
up after ``CHARTER_IDEMPOTENCY_PENDING_SECONDS``, so the next retry runs.
Records expire after ``CHARTER_IDEMPOTENCY_TTL_HOURS`` (a Celery beat task).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from portal.db import defer
from portal.models import IdempotencyRecord

# IdempotencyRecord's table; identifiers in double quotes work on PostgreSQL and SQLite.
_INSERT_SQL = (
    'INSERT INTO "portal_idempotencyrecord" '
    '("principal", "key", "request_sha256", "status_code", "content_type", "body", '
    '"created_at", "completed_at") VALUES (%s, %s, %s, %s, %s, %s, %s, %s)'
)
_STORE_SQL = _INSERT_SQL + ' ON CONFLICT ("principal", "key") DO NOTHING RETURNING "id"'
#: the key's unique constraint (``IdempotencyRecord.Meta``), named by the error it raises
_KEY_CONSTRAINT = "idempotency_key_unique"
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
        # The request's writes and the record of its key and answer commit together, in one
        # transaction: a request that dies half-way (its worker killed, the database
        # restarted) leaves neither data nor record, and a retry can never find the data
        # written but the answer lost. The record is one statement at the end: a first use
        # of the key inserts it; a repeat finds it taken (after waiting on the unique index
        # for a concurrent first request to commit), rolls its own writes back and answers
        # as the first did.
        # An upload's repeat is answered before it runs, so that its file is not stored a
        # second time only to be rolled back (one read; other requests skip it).
        record = None
        if request.content_type.startswith("multipart/"):
            record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
        if record is None:
            # the request's own transaction (not a savepoint in someone else's): its
            # record can then travel with its COMMIT (see _run)
            last = not connection.in_atomic_block
            try:
                with transaction.atomic():
                    return self._run(request, principal, key, digest, last=last)
            except _KeyTaken:
                pass
            except IntegrityError as exc:
                if not (last and _violates(exc, _KEY_CONSTRAINT)):
                    raise
            record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
        if record is None:  # the first request's record expired meanwhile
            response = _error(409, "a request with this key was just being processed")
        else:
            response = self._repeat(record, digest)
        if response.status_code == 409:
            response["Retry-After"] = "1"
        return response

    def _repeat(self, record: IdempotencyRecord, digest: str) -> HttpResponse:
        if record.request_sha256 != digest:
            return _error(422, "this key was used for a different request")
        if record.completed_at is not None:
            response = HttpResponse(
                bytes(record.body), status=record.status_code, content_type=record.content_type
            )
            response["Idempotent-Replayed"] = "true"
            return response
        pending = timedelta(seconds=settings.CHARTER_IDEMPOTENCY_PENDING_SECONDS)
        if record.created_at <= timezone.now() - pending:
            record.delete()  # abandoned by a crashed worker of an older version: retry runs
        return _error(409, "a request with this key is still being processed")

    def _run(
        self, request: HttpRequest, principal: str, key: str, digest: str, *, last: bool
    ) -> HttpResponse:
        """Run the request inside the caller's transaction and store its answer.

        ``last``: the transaction ends when this returns. The record is then a plain
        ``INSERT`` sent with the ``COMMIT`` (``portal.db.defer``; no round trip of its
        own): a key already taken fails it on the unique constraint, the transaction is
        rolled back before ``COMMIT`` runs, and the caller replays the first answer."""
        response = self.get_response(request)
        if response.status_code >= 500:
            transaction.set_rollback(True)  # not kept: the retry runs afresh
            return response
        if getattr(response, "streaming", False):
            return response  # an answer that cannot be stored: the key is not kept
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        values = [
            principal,
            key,
            digest,
            response.status_code,
            response.get("Content-Type", ""),
            response.content,
            now,
            now,
        ]
        if last and defer(_INSERT_SQL, values):
            return response
        with connection.cursor() as cursor:
            cursor.execute(_STORE_SQL, values)
            stored = cursor.fetchone()
        if stored is None:
            raise _KeyTaken  # rolls this request's writes back
        return response


def _violates(exc: IntegrityError, constraint: str) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == constraint


class _KeyTaken(Exception):
    """The key was used before (or by a concurrent request that committed first)."""


def purge_expired(now: object = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(hours=settings.CHARTER_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
