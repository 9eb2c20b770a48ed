"""The portal's 500 handler: a lost database connection is a 503 the caller may retry.

When PostgreSQL restarts or fails over, requests in flight (and the first use of a pooled
connection it killed) raise ``OperationalError`` or ``InterfaceError`` wherever they touch
the database: in a view, in the idempotency middleware, in authentication. The request's
transaction has rolled back, so nothing was written; answering 503 with ``Retry-After``
(rather than a bare 500) tells clients such as ``charter_client`` to retry with the same
``Idempotency-Key``. Any other unhandled error stays a 500.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error as default_server_error

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2
UNAVAILABLE = "The database is unavailable for a moment; nothing was changed. Retry shortly."


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: 503 + Retry-After for database connection errors, else Django's 500."""
    exc = sys.exc_info()[1]
    if not isinstance(exc, OperationalError | InterfaceError):
        return default_server_error(request)
    log.warning("database unavailable, answered 503: %s", exc)
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"detail": UNAVAILABLE, "code": "database_unavailable", "errors": {}}, status=503
        )
    else:
        response = HttpResponse(UNAVAILABLE, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response
