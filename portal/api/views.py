from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import services, webhooks
from portal.api.schema import ERRORS_READ, ERRORS_WRITE
from portal.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenSerializer,
    GrantSerializer,
    RevokeSerializer,
    WebhookDeliverySerializer,
    WebhookSubscriptionCreatedSerializer,
    WebhookSubscriptionSerializer,
    WebhookUpdateSerializer,
)
from portal.models import ApiToken, WebhookSubscription
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
        request=ApiTokenSerializer,
        responses={201: ApiTokenCreatedSerializer, **ERRORS_WRITE},
        summary="Issue a token for yourself",
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


# ---------------------------------------------------------------- webhooks


@extend_schema_view(
    list=extend_schema(
        summary="List your webhook subscriptions (administrators: all)",
        responses={200: WebhookSubscriptionSerializer(many=True), **ERRORS_READ},
    ),
    retrieve=extend_schema(
        summary="Read one webhook subscription",
        responses={200: WebhookSubscriptionSerializer, **ERRORS_READ},
    ),
    create=extend_schema(
        summary="Subscribe a URL to events (the response carries the signing secret, once)",
        request=WebhookSubscriptionSerializer,
        responses={201: WebhookSubscriptionCreatedSerializer, **ERRORS_WRITE},
    ),
    partial_update=extend_schema(
        summary="Change a subscription's name, URL, events or active flag",
        request=WebhookUpdateSerializer,
        responses={200: WebhookSubscriptionSerializer, **ERRORS_WRITE},
    ),
    destroy=extend_schema(
        summary="Delete a subscription and its delivery log",
        responses={204: None, **ERRORS_WRITE},
    ),
)
class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Outgoing webhooks: signed JSON POSTs when versions, approvals, deployments,
    incidents or retraining jobs change. You see the subscriptions you created."""

    serializer_class = WebhookSubscriptionSerializer
    queryset = WebhookSubscription.objects.all()
    use_case_field = None  # visibility is by owner (webhooks.visible_subscriptions)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["active", "use_case"]
    search_fields = ["name", "url"]
    ordering_fields = ["created_at", "name"]

    def get_queryset(self) -> QuerySet[WebhookSubscription]:
        return webhooks.visible_subscriptions(Access.for_request(self.request))

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        sub, secret = webhooks.create_subscription(
            Access.for_request(request), **body.validated_data
        )
        sub.shown_secret = secret  # type: ignore[attr-defined]
        return Response(
            WebhookSubscriptionCreatedSerializer(sub, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        sub = self.get_object()
        body = WebhookUpdateSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(WebhookUpdateSerializer().fields))
        if unknown:
            return Response(
                {
                    "detail": "Invalid input.",
                    "errors": {
                        k: ["cannot be changed; create another subscription"] for k in unknown
                    },
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        sub = webhooks.update_subscription(Access.for_request(request), sub, **body.validated_data)
        return Response(self.get_serializer(sub).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        webhooks.delete_subscription(Access.for_request(request), self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="The subscription's deliveries, newest first, with every try",
        responses={200: WebhookDeliverySerializer(many=True), **ERRORS_READ},
        filters=False,
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        sub = self.get_object()
        rows = sub.deliveries.prefetch_related("tries").order_by("-created_at")
        page = self.paginate_queryset(rows)
        data = WebhookDeliverySerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        request=None,
        summary="Send a 'ping' event to the subscription's URL now",
        responses={202: WebhookDeliverySerializer, **ERRORS_WRITE},
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        delivery = webhooks.send_test(Access.for_request(request), self.get_object())
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
