"""One error shape for the whole API: ``{"detail": ..., "errors": {field: [messages]}}``.

Django ``ValidationError`` from the service layer becomes 400 with field names,
``PermissionDenied`` 403, invalid status transitions 409, and database integrity
errors 409, so the client never sees a 500 for bad input.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portal.keys import SigningKeyUnavailable
from registry.services import InvalidTransition

log = logging.getLogger(__name__)


def _django_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if k == "__all__" else k): v for k, v in exc.message_dict.items()
        }
    return {"non_field_errors": list(exc.messages)}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    from approvals.gate import GateRefused

    if isinstance(exc, SigningKeyUnavailable):  # e.g. an approval that must be signed
        return Response(
            {"detail": f"The portal cannot sign: {exc}", "errors": {}},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        log.error("upload refused, storage full: %s", exc)
        return Response(
            {
                "detail": "The server's storage is full: nothing was stored. "
                "Try again later or ask an administrator to free space.",
                "code": "insufficient_storage",
                "errors": {},
            },
            status=status.HTTP_507_INSUFFICIENT_STORAGE,
        )
    if isinstance(exc, GateRefused):
        return Response(
            {"detail": str(exc), "errors": _django_errors(exc)}, status=status.HTTP_409_CONFLICT
        )
    if isinstance(exc, DjangoValidationError):
        errors = _django_errors(exc)
        return Response({"detail": "Invalid input.", "errors": errors}, status=400)
    if isinstance(exc, InvalidTransition):
        return Response(
            {"detail": str(exc), "errors": {exc.field: [str(exc)]}},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, IntegrityError):
        return Response(
            {"detail": "This conflicts with an existing record.", "errors": {}},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        data = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
        response.data = {"detail": "Invalid input.", "errors": data}
    elif isinstance(exc, exceptions.ParseError):
        response.data = {"detail": str(exc.detail), "errors": {"body": [str(exc.detail)]}}
    return response


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: a URL under /api/ that matches no route gets the API's JSON error shape.

    Everything else keeps Django's page. (A path parameter of the wrong type, say
    ``/api/v1/use-cases/abc/``, matches no route either, so it lands here too.)
    """
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
