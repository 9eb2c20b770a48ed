"""REST API for approvals: pipelines request approval and wait for the decision (CI
gates); reviewers decide; risk officers edit policies. Rules live in approvals.services."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from approvals import services
from approvals.models import ApprovalPolicy, ApprovalRequest, Decision, Notification
from portal.api.schema import ERRORS_READ, ERRORS_WRITE
from portal.permissions import Access
from registry.api.fields import ScopedRelatedField
from registry.models import ModelVersion, UseCase


class DecisionSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Decision
        fields = ["id", "reviewer", "role", "verdict", "comment", "round", "created_at"]


class ApprovalRequestSerializer(serializers.ModelSerializer):
    model_version = ScopedRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    use_case = ScopedRelatedField(queryset=UseCase.objects.all(), required=False)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    policy = serializers.SerializerMethodField()
    decisions = DecisionSerializer(many=True, read_only=True)
    quorum = serializers.SerializerMethodField()
    blocking = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "kind",
            "use_case",
            "model_version",
            "environment",
            "summary",
            "state",
            "policy",
            "requested_by",
            "created_at",
            "submitted_at",
            "decided_at",
            "expires_at",
            "check_results",
            "checked_at",
            "quorum",
            "blocking",
            "decisions",
            "artifact_sha256",
            "closed_reason",
        ]
        read_only_fields = [
            "kind",
            "state",
            "created_at",
            "submitted_at",
            "decided_at",
            "expires_at",
            "check_results",
            "checked_at",
            "artifact_sha256",
            "closed_reason",
        ]
        extra_kwargs = {"environment": {"required": False}}

    def get_policy(self, obj: ApprovalRequest) -> dict[str, Any]:
        return {"id": obj.policy_id, "name": obj.policy.name, "version": obj.policy.version}

    def get_quorum(self, obj: ApprovalRequest) -> dict[str, dict[str, int]]:
        return services.quorum_status(obj)

    def get_blocking(self, obj: ApprovalRequest) -> list[str]:
        return services.blocking_reasons(obj) if obj.is_open else []


class DecideSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Decision.Verdict.choices)
    comment = serializers.CharField(max_length=5000)
    role = serializers.CharField(required=False, allow_blank=True)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class PolicySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApprovalPolicy
        fields = [
            "id",
            "risk_tier",
            "environment",
            "version",
            "name",
            "description",
            "quorum",
            "required_evidence",
            "checks",
            "validity_days",
            "separation_of_duties",
            "rollback_without_approval",
            "active",
            "created_at",
        ]
        read_only_fields = ["version", "active", "created_at"]


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "text", "url", "created_at", "read_at"]


@extend_schema_view(
    list=extend_schema(
        summary="Approval requests you may see",
        responses={200: ApprovalRequestSerializer(many=True), 401: ERRORS_READ[401]},
    ),
    retrieve=extend_schema(
        summary="One approval request", responses={200: ApprovalRequestSerializer, **ERRORS_READ}
    ),
    create=extend_schema(
        summary="Request approval of a model version for an environment (submitted at once)",
        responses={201: ApprovalRequestSerializer, **ERRORS_WRITE},
    ),
)
class ApprovalRequestViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ApprovalRequest.objects.select_related(
        "policy", "requested_by", "use_case", "model_version"
    ).prefetch_related("decisions__reviewer")
    serializer_class = ApprovalRequestSerializer
    filterset_fields = ["state", "environment", "model_version", "use_case", "kind"]
    ordering_fields = ["created_at", "state"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        req = services.create_request(
            Access.for_request(request),
            model_version=data.get("model_version"),
            use_case=data.get("use_case"),
            environment=data.get("environment") or "production",
            summary=data.get("summary", ""),
        )
        return Response(self.get_serializer(req).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=DecideSerializer,
        responses={201: DecisionSerializer, **ERRORS_WRITE},
        summary="Approve, reject or request changes (one decision per reviewer)",
    )
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str | None = None) -> Response:
        req = self.get_object()
        body = DecideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decision = services.decide(
            Access.for_request(request),
            req,
            verdict=body.validated_data["verdict"],
            comment=body.validated_data["comment"],
            role=body.validated_data.get("role") or None,
        )
        return Response(DecisionSerializer(decision).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: ApprovalRequestSerializer, **ERRORS_WRITE},
        summary="Resubmit after changes were requested (a new round of decisions)",
    )
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        req = services.submit_request(Access.for_request(request), self.get_object())
        return Response(self.get_serializer(req).data)

    @extend_schema(
        request=ReasonSerializer,
        responses={200: ApprovalRequestSerializer, **ERRORS_WRITE},
        summary="Withdraw the request",
    )
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        req = services.withdraw_request(
            Access.for_request(request),
            self.get_object(),
            reason=body.validated_data.get("reason", ""),
        )
        return Response(self.get_serializer(req).data)

    @extend_schema(
        request=None,
        responses={200: ApprovalRequestSerializer, **ERRORS_READ},
        summary="Re-evaluate the policy's checks now",
    )
    @action(detail=True, methods=["post"])
    def evaluate(self, request: Request, pk: str | None = None) -> Response:
        req = self.get_object()
        Access.for_request(request).require_view(req.use_case)
        if req.is_open:
            services.evaluate_checks(req)
        return Response(self.get_serializer(req).data)

    @extend_schema(
        responses={200: dict, **ERRORS_READ},
        summary="The signed approval: a DSSE envelope over an in-toto statement",
    )
    @action(detail=True, methods=["get"])
    def attestation(self, request: Request, pk: str | None = None) -> Response:
        req = self.get_object()
        if not req.attestation:
            return Response(
                {"detail": "this request has no signed approval", "errors": {}},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(req.attestation)


@extend_schema_view(
    list=extend_schema(summary="Approval policies (every version)"),
    retrieve=extend_schema(
        summary="One policy version", responses={200: PolicySerializer, **ERRORS_READ}
    ),
    create=extend_schema(
        summary="Create a policy (or its next version)",
        responses={201: PolicySerializer, **ERRORS_WRITE},
    ),
    partial_update=extend_schema(
        summary="Edit = save the next version", responses={201: PolicySerializer, **ERRORS_WRITE}
    ),
)
class ApprovalPolicyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ApprovalPolicy.objects.all()
    serializer_class = PolicySerializer
    use_case_field = None  # policies are not per use case: everyone signed in may read them
    filterset_fields = ["risk_tier", "environment", "active"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        policy = services.create_policy(Access.for_request(request), **body.validated_data)
        return Response(self.get_serializer(policy).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        policy = self.get_object()
        data = request.data if isinstance(request.data, dict) else {}
        new = services.update_policy(Access.for_request(request), policy, **dict(data))
        return Response(self.get_serializer(new).data, status=status.HTTP_201_CREATED)


@extend_schema_view(list=extend_schema(summary="Your notifications, newest first"))
class NotificationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = NotificationSerializer
    queryset = Notification.objects.none()
    use_case_field = None  # narrowed to the caller's own notifications instead

    def get_queryset(self) -> Any:
        return Notification.objects.filter(user=self.request.user)

    @extend_schema(request=None, responses={200: dict}, summary="Mark all as read")
    @action(detail=False, methods=["post"])
    def read(self, request: Request) -> Response:
        n = self.get_queryset().filter(read_at__isnull=True).update(read_at=timezone.now())
        return Response({"marked": n})
