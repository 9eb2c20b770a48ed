"""Error responses shared by every endpoint's OpenAPI description.

Every error the API returns has one shape (portal/api/exceptions.py):
``{"detail": "...", "errors": {field: [messages]}}`` (``errors`` may nest for nested
fields and is absent on authentication, permission and not-found errors).
:class:`CharterAutoSchema` declares it for each status code an operation can really
answer with, so clients (and schemathesis, tests/fuzz/) can rely on the documented set.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorBody = inline_serializer(
    "Error",
    fields={
        "detail": serializers.CharField(),
        "errors": serializers.DictField(
            child=serializers.JSONField(),
            required=False,
            help_text="Field name → messages (a list of strings, or an object for nested fields).",
        ),
        "code": serializers.CharField(required=False),
    },
)

_DESCRIPTIONS = {
    400: "Invalid input; `errors` names each field",
    401: "Not authenticated",
    403: "You may see this but not change it",
    404: "Not found, or not visible to you",
    409: "Conflicts with the current state",
    413: "Body larger than the configured limit",
    415: "Unsupported Content-Type for the body",
}

ERRORS_READ = {
    401: OpenApiResponse(ErrorBody, description=_DESCRIPTIONS[401]),
    404: OpenApiResponse(ErrorBody, description=_DESCRIPTIONS[404]),
}
ERRORS_WRITE = {
    code: OpenApiResponse(ErrorBody, description=_DESCRIPTIONS[code])
    for code in (400, 401, 403, 404, 409, 413)
}


class CharterAutoSchema(AutoSchema):
    """Adds the error responses an operation can answer with to the ones it declares.

    Every operation can refuse a caller (401, 403) and a malformed ``Content-Length``
    (400); one that takes parameters or a body can refuse them (400); one with a path
    parameter or a paginated list can miss (404, also "invalid page"); a write can
    conflict with the current state (409), be too large (413) or carry an unsupported
    media type (415). Codes an operation declares itself keep their own description.
    """

    def _error_codes(self) -> list[int]:
        codes = [400, 401, 403]
        has_path_parameter = "{" in self.path
        paginated = (
            self.method == "GET"
            and self._is_list_view()
            and getattr(self.view, "pagination_class", None) is not None
        )
        if has_path_parameter or paginated:
            codes.append(404)
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes += [409, 413, 415]
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    OpenApiResponse(ErrorBody, description=_DESCRIPTIONS[code]),
                    str(code),
                    direction=direction,
                )
        return responses


class SingleObjectSchema(CharterAutoSchema):
    """For a ViewSet whose ``list`` answers with one object, not an array (e.g. the portal key)."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return False
