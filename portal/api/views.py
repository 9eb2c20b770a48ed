from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import services
from portal.api.schema import ERRORS_READ, ERRORS_WRITE
from portal.api.serializers import ApiTokenSerializer, GrantSerializer, RevokeSerializer
from portal.models import ApiToken
from portal.permissions import Access


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens (administrators see every token)."""

    serializer_class = ApiTokenSerializer
    queryset = ApiToken.objects.select_related("user").prefetch_related("use_cases")
    use_case_field = None
    ordering_fields = ["created_at", "expires_at"]
    search_fields = ["name"]
    filterset_fields = ["user"]

    def get_queryset(self) -> QuerySet[ApiToken]:
        access = Access.for_request(self.request)
        if access.can_administer() and access.token is None:
            return self.queryset
        return self.queryset.filter(user=self.request.user)

    @extend_schema(
        responses={201: ApiTokenSerializer, **ERRORS_WRITE}, summary="Issue a token for yourself"
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, secret = services.issue_token(
            Access.for_request(request),
            user=request.user,
            name=body.validated_data["name"],
            use_cases=body.validated_data.get("use_cases"),
            expires_at=body.validated_data.get("expires_at"),
        )
        data = self.get_serializer(token).data
        data["token"] = secret
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RevokeSerializer, responses={200: ApiTokenSerializer, **ERRORS_WRITE})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        token = self.get_object()
        body = RevokeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.revoke_token(
            Access.for_request(request), token, reason=body.validated_data["reason"]
        )
        return Response(self.get_serializer(token).data)


class GrantView(APIView):
    """Grant or revoke a user's or group's access to a use case (administrators)."""

    @extend_schema(request=GrantSerializer, responses={204: None, **ERRORS_WRITE, **ERRORS_READ})
    def post(self, request: Request) -> Response:
        body = GrantSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        principal = data.get("user") or data.get("group")
        access = Access.for_request(request)
        if data["level"] == "none":
            services.revoke_access(access, data["use_case"], principal, reason=data["reason"])
        else:
            services.grant_access(
                access, data["use_case"], principal, data["level"], reason=data["reason"]
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
