"""Error responses shared by every endpoint's OpenAPI description."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorBody = inline_serializer(
    "Error",
    fields={
        "detail": serializers.CharField(),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()), required=False
        ),
    },
)

ERRORS_READ = {
    401: OpenApiResponse(ErrorBody, description="Not authenticated"),
    404: OpenApiResponse(ErrorBody, description="Not found, or not visible to you"),
}
ERRORS_WRITE = {
    400: OpenApiResponse(ErrorBody, description="Invalid input; `errors` names each field"),
    401: OpenApiResponse(ErrorBody, description="Not authenticated"),
    403: OpenApiResponse(ErrorBody, description="You may see this but not change it"),
    404: OpenApiResponse(ErrorBody, description="Not found, or not visible to you"),
    409: OpenApiResponse(ErrorBody, description="Conflicts with the current state"),
    413: OpenApiResponse(ErrorBody, description="Body larger than the configured limit"),
}
