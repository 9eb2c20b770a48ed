"""Thin viewsets: queryset, serializer, filterset. Rules live in registry.services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.api.schema import ERRORS_READ, ERRORS_WRITE
from portal.permissions import Access
from registry import filters, services
from registry.api import serializers as s
from registry.models import (
    Artifact,
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    UseCase,
)


def _documented(plural: str, one: str, serializer: Any) -> Any:
    """Summaries and error responses for a viewset's standard operations."""
    return extend_schema_view(
        list=extend_schema(
            summary=f"List the {plural} you may see",
            responses={200: serializer(many=True), **ERRORS_READ},
        ),
        retrieve=extend_schema(
            summary=f"Read one {one}", responses={200: serializer, **ERRORS_READ}
        ),
        create=extend_schema(
            summary=f"Create a {one}", responses={201: serializer, **ERRORS_WRITE}
        ),
        partial_update=extend_schema(
            summary=f"Change a {one}", responses={200: serializer, **ERRORS_WRITE}
        ),
        update=extend_schema(
            summary=f"Replace a {one}", responses={200: serializer, **ERRORS_WRITE}
        ),
    )


class TransitionMixin:
    transition_service: Any = None

    @extend_schema(
        request=s.TransitionSerializer,
        responses={
            200: OpenApiResponse(description="The object after the transition"),
            **ERRORS_WRITE,
        },
        summary="Move the object to another status",
    )
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str | None = None) -> Response:
        obj = self.get_object()  # type: ignore[attr-defined]
        body = s.TransitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        type(self).transition_service(
            Access.for_request(request),
            obj,
            body.validated_data["status"],
            reason=body.validated_data["reason"],
        )
        obj.refresh_from_db()
        return Response(self.get_serializer(obj).data)  # type: ignore[attr-defined]


class CreateReadUpdate(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    http_method_names = ["get", "post", "patch", "put", "head", "options"]


class CreateRead(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    """Evidence, artifacts and deployments are records of fact: never edited."""


@_documented("use cases", "use case", s.UseCaseSerializer)
class UseCaseViewSet(TransitionMixin, CreateReadUpdate):
    queryset = UseCase.objects.select_related("business_owner", "technical_owner", "created_by")
    serializer_class = s.UseCaseSerializer
    filterset_class = filters.UseCaseFilter
    search_fields = ["name", "purpose"]
    ordering_fields = ["name", "risk_tier", "status", "next_review_date", "created_at"]
    transition_service = services.transition_use_case


@_documented("datasets", "dataset", s.DatasetSerializer)
class DatasetViewSet(CreateReadUpdate):
    queryset = Dataset.objects.select_related("owner")
    serializer_class = s.DatasetSerializer
    filterset_class = filters.DatasetFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]


@_documented("dataset versions", "dataset version", s.DatasetVersionSerializer)
class DatasetVersionViewSet(CreateReadUpdate):
    queryset = DatasetVersion.objects.select_related("dataset", "created_by").prefetch_related(
        "derived_from"
    )
    serializer_class = s.DatasetVersionSerializer
    filterset_class = filters.DatasetVersionFilter
    search_fields = ["version", "dataset__name"]
    ordering_fields = ["created_at", "version", "row_count", "size_bytes"]


@_documented("models", "model", s.ModelSerializer)
class ModelViewSet(CreateReadUpdate):
    queryset = Model.objects.select_related("owner")
    serializer_class = s.ModelSerializer
    filterset_class = filters.ModelFilter
    search_fields = ["name", "description", "task"]
    ordering_fields = ["name", "created_at"]


@_documented("model versions", "model version", s.ModelVersionSerializer)
class ModelVersionViewSet(TransitionMixin, CreateReadUpdate):
    queryset = ModelVersion.objects.select_related("model", "registered_by").prefetch_related(
        "training_datasets", "validation_datasets", "test_datasets"
    )
    serializer_class = s.ModelVersionSerializer
    filterset_class = filters.ModelVersionFilter
    search_fields = ["version", "model__name", "code_commit"]
    ordering_fields = ["created_at", "version", "status"]
    transition_service = services.transition_model_version


@_documented("evidence items", "evidence item", s.EvidenceSerializer)
class EvidenceViewSet(CreateRead):
    queryset = Evidence.objects.select_related("created_by")
    serializer_class = s.EvidenceSerializer
    filterset_class = filters.EvidenceFilter
    search_fields = ["title", "summary"]
    ordering_fields = ["created_at", "kind"]


@_documented("artifacts", "artifact", s.ArtifactSerializer)
class ArtifactViewSet(CreateRead):
    queryset = Artifact.objects.select_related("created_by")
    serializer_class = s.ArtifactSerializer
    filterset_class = filters.ArtifactFilter
    search_fields = ["name", "uri"]
    ordering_fields = ["created_at", "size_bytes"]


@_documented("deployments", "deployment", s.DeploymentSerializer)
class DeploymentViewSet(TransitionMixin, CreateRead):
    queryset = Deployment.objects.select_related("released_by")
    serializer_class = s.DeploymentSerializer
    filterset_class = filters.DeploymentFilter
    search_fields = ["endpoint", "region"]
    ordering_fields = ["released_at", "environment", "status"]
    transition_service = services.transition_deployment

    @extend_schema(
        request=s.TransitionSerializer,
        responses={201: s.DeploymentSerializer, **ERRORS_WRITE},
        summary="Roll back to the deployment this one replaced (recorded as a new deployment)",
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        deployment = self.get_object()
        reason = (
            str(request.data.get("reason", ""))[:2000] if isinstance(request.data, dict) else ""
        )
        restored = services.rollback_deployment(
            Access.for_request(request), deployment, reason=reason
        )
        return Response(self.get_serializer(restored).data, status=status.HTTP_201_CREATED)
