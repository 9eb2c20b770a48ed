"""Thin viewsets: queryset, serializer, filterset. Rules live in registry.services."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, renderers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audits.models import AuditEvent
from audits.services import record_access
from portal import keys as portal_keys
from portal.api.schema import ERRORS_READ, ERRORS_WRITE, ErrorBody, SingleObjectSchema
from portal.permissions import Access
from registry import filters, services, signing
from registry.api import serializers as s
from registry.models import (
    Artifact,
    Attestation,
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    SigningKey,
    UseCase,
)

ATTESTATIONS_PREFETCH = ("attestations__signer_key__owner", "attestations__created_by")


class AccessLoggedRetrieveMixin:
    """Reading one sensitive object leaves a ``view`` event in the audit chain."""

    def is_sensitive(self, obj: Any) -> bool:
        return True

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        obj = self.get_object()  # type: ignore[attr-defined]
        if self.is_sensitive(obj):
            record_access(AuditEvent.Action.VIEW, actor=request.user, obj=obj)
        return Response(self.get_serializer(obj).data)  # type: ignore[attr-defined]


def _unavailable(exc: portal_keys.SigningKeyUnavailable) -> Response:
    return Response(
        {"detail": f"The portal cannot sign: {exc}", "errors": {}},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


class AttestationsMixin:
    """``GET|POST <object>/attestations/``: list or attach signed envelopes."""

    @extend_schema(
        request=s.EnvelopeUploadSerializer,
        responses={200: s.AttestationSerializer(many=True), 201: s.AttestationSerializer},
        summary="List this object's attestations, or attach a DSSE envelope (verified on receipt)",
    )
    # The list is one object's attestations, whole: not paginated (nor in the schema).
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def attestations(self, request: Request, pk: str | None = None) -> Response:
        target = self.get_object()  # type: ignore[attr-defined]
        if request.method == "GET":
            rows = target.attestations.select_related("signer_key__owner", "created_by")
            return Response(s.AttestationSerializer(rows, many=True).data)
        body = s.EnvelopeUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        att = signing.attach_attestation(
            Access.for_request(request), target, body.validated_data["envelope"]
        )
        return Response(s.AttestationSerializer(att).data, status=status.HTTP_201_CREATED)


def _documented(plural: str, one: str, serializer: Any, *, editable: bool = True) -> Any:
    """Summaries and error responses for a viewset's standard operations."""
    operations = {
        "list": extend_schema(
            summary=f"List the {plural} you may see",
            responses={200: serializer(many=True), **ERRORS_READ},
        ),
        "retrieve": extend_schema(
            summary=f"Read one {one}", responses={200: serializer, **ERRORS_READ}
        ),
        "create": extend_schema(
            summary=f"Create a {one}", responses={201: serializer, **ERRORS_WRITE}
        ),
    }
    if editable:
        operations["partial_update"] = extend_schema(
            summary=f"Change a {one}", responses={200: serializer, **ERRORS_WRITE}
        )
        operations["update"] = extend_schema(
            summary=f"Replace a {one}", responses={200: serializer, **ERRORS_WRITE}
        )
    return extend_schema_view(**operations)


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
class DatasetVersionViewSet(AccessLoggedRetrieveMixin, CreateReadUpdate):
    queryset = DatasetVersion.objects.select_related("dataset", "created_by").prefetch_related(
        "derived_from"
    )
    serializer_class = s.DatasetVersionSerializer
    filterset_class = filters.DatasetVersionFilter
    search_fields = ["version", "dataset__name"]
    ordering_fields = ["created_at", "version", "row_count", "size_bytes"]

    def is_sensitive(self, obj: DatasetVersion) -> bool:
        return obj.is_sensitive


@_documented("models", "model", s.ModelSerializer)
class ModelViewSet(CreateReadUpdate):
    queryset = Model.objects.select_related("owner")
    serializer_class = s.ModelSerializer
    filterset_class = filters.ModelFilter
    search_fields = ["name", "description", "task"]
    ordering_fields = ["name", "created_at"]


@extend_schema_view(  # the list answers in its own, shorter form
    list=extend_schema(
        summary="List the model versions you may see",
        responses={200: s.ModelVersionListSerializer(many=True), **ERRORS_READ},
    )
)
@_documented("model versions", "model version", s.ModelVersionSerializer)
class ModelVersionViewSet(TransitionMixin, CreateReadUpdate):
    _ids_only = DatasetVersion.objects.only("id")
    queryset = ModelVersion.objects.select_related("model", "registered_by").prefetch_related(
        Prefetch("training_datasets", queryset=_ids_only),
        Prefetch("validation_datasets", queryset=_ids_only),
        Prefetch("test_datasets", queryset=_ids_only),
    )
    detail_prefetch = (
        *(f"artifacts__{p}" for p in ATTESTATIONS_PREFETCH),
        *(f"evidence__{p}" for p in ATTESTATIONS_PREFETCH),
    )

    def get_queryset(self) -> Any:
        if self.action == "list":
            return self.queryset
        return self.queryset.prefetch_related(*self.detail_prefetch)

    def get_serializer_class(self) -> Any:
        return s.ModelVersionListSerializer if self.action == "list" else s.ModelVersionSerializer

    serializer_class = s.ModelVersionSerializer
    filterset_class = filters.ModelVersionFilter
    search_fields = ["version", "model__name", "code_commit"]
    ordering_fields = ["created_at", "version", "status"]
    transition_service = services.transition_model_version


@_documented("evidence items", "evidence item", s.EvidenceSerializer, editable=False)
class EvidenceViewSet(AttestationsMixin, CreateRead):
    queryset = Evidence.objects.select_related("created_by").prefetch_related(
        *ATTESTATIONS_PREFETCH
    )
    serializer_class = s.EvidenceSerializer
    filterset_class = filters.EvidenceFilter
    search_fields = ["title", "summary"]
    ordering_fields = ["created_at", "kind"]


@_documented("artifacts", "artifact", s.ArtifactSerializer, editable=False)
class ArtifactViewSet(AccessLoggedRetrieveMixin, AttestationsMixin, CreateRead):
    queryset = Artifact.objects.select_related("created_by").prefetch_related(
        *ATTESTATIONS_PREFETCH
    )
    serializer_class = s.ArtifactSerializer
    filterset_class = filters.ArtifactFilter
    search_fields = ["name", "uri"]
    ordering_fields = ["created_at", "size_bytes"]

    @extend_schema(
        request=s.PortalSignSerializer,
        responses={
            201: s.AttestationSerializer,
            503: OpenApiResponse(ErrorBody, description="The portal has no signing key"),
            **ERRORS_WRITE,
        },
        summary="Have the portal sign an in-toto statement over this artifact for you",
    )
    @action(detail=True, methods=["post"])
    def sign(self, request: Request, pk: str | None = None) -> Response:
        artifact = self.get_object()
        body = s.PortalSignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            att = signing.sign_artifact_as_portal(
                Access.for_request(request),
                artifact,
                body.validated_data["predicate_type"],
                body.validated_data["predicate"],
            )
        except portal_keys.SigningKeyUnavailable as exc:
            return _unavailable(exc)
        return Response(s.AttestationSerializer(att).data, status=status.HTTP_201_CREATED)


@_documented("deployments", "deployment", s.DeploymentSerializer, editable=False)
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


# ---------------------------------------------------------------- signing


class PEMRenderer(renderers.BaseRenderer):
    """``text/plain`` PEM; errors still come out as JSON text."""

    media_type = "text/plain"
    format = "pem"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> Any:
        if isinstance(data, str):
            return data.encode(self.charset)
        return json.dumps(data).encode(self.charset)


@extend_schema_view(
    list=extend_schema(
        summary="List registered signing keys (public; any signed-in user)",
        responses={200: s.SigningKeySerializer(many=True), **ERRORS_READ},
    ),
    retrieve=extend_schema(
        summary="Read one signing key (by id or key id)",
        responses={200: s.SigningKeySerializer, **ERRORS_READ},
    ),
    create=extend_schema(
        summary="Register your Ed25519 public key (PEM)",
        responses={201: s.SigningKeySerializer, **ERRORS_WRITE},
    ),
)
class SigningKeyViewSet(CreateRead):
    """Public keys are readable by any authenticated user; ``<id>`` is the database id or
    the key id (Charter's SHA-256 of the raw key, or securesystemslib's)."""

    queryset = SigningKey.objects.select_related("owner", "created_by", "revoked_by")
    serializer_class = s.SigningKeySerializer
    use_case_field = None
    lookup_value_regex = "[0-9A-Fa-f]+"
    filterset_fields = ["kind", "owner"]
    search_fields = ["name", "key_id", "owner__username"]
    ordering_fields = ["created_at", "revoked_at"]

    def get_object(self) -> SigningKey:
        key = signing.get_key(str(self.kwargs[self.lookup_url_kwarg or self.lookup_field]))
        if key is None:
            raise Http404("no such signing key")
        self.check_object_permissions(self.request, key)
        return key

    @extend_schema(
        request=s.RevokeKeySerializer,
        responses={200: s.SigningKeySerializer, **ERRORS_WRITE},
        summary="Revoke a key (its owner or an administrator)",
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        key = self.get_object()
        body = s.RevokeKeySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = signing.revoke_signing_key(
            Access.for_request(request),
            key,
            reason=body.validated_data["reason"],
            revoked_at=body.validated_data.get("revoked_at"),
        )
        return Response(self.get_serializer(key).data)

    @extend_schema(
        responses={(200, "text/plain"): OpenApiTypes.STR, **ERRORS_READ},
        summary="The public key as PEM text",
    )
    @action(detail=True, methods=["get"], renderer_classes=[PEMRenderer, renderers.JSONRenderer])
    def pem(self, request: Request, pk: str | None = None) -> Response:
        key = self.get_object()
        return Response(key.public_key_pem, content_type="text/plain; charset=utf-8")


@extend_schema_view(
    list=extend_schema(
        summary="List the attestations you may see",
        responses={200: s.AttestationSerializer(many=True), **ERRORS_READ},
    ),
    retrieve=extend_schema(
        summary="Read one attestation", responses={200: s.AttestationSerializer, **ERRORS_READ}
    ),
)
class AttestationViewSet(viewsets.ReadOnlyModelViewSet):
    """Attestations are created through their artifact or evidence item, never edited."""

    queryset = Attestation.objects.select_related("signer_key__owner", "created_by")
    serializer_class = s.AttestationSerializer
    filterset_fields = ["artifact", "evidence", "verdict", "signer_key", "portal_signed"]
    ordering_fields = ["created_at", "verified_at"]

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, **ERRORS_READ},
        summary="The DSSE envelope exactly as stored",
    )
    @action(detail=True, methods=["get"])
    def envelope(self, request: Request, pk: str | None = None) -> Response:
        att = self.get_object()
        record_access(AuditEvent.Action.DOWNLOAD, actor=request.user, obj=att)
        return Response(
            att.envelope,
            headers={
                "Content-Disposition": f'attachment; filename="attestation-{att.pk}.dsse.json"'
            },
        )


class PortalKeyViewSet(viewsets.ViewSet):
    """``GET /api/v1/portal-key/``: the portal's current public key (and retired ones)."""

    schema = SingleObjectSchema()  # ``list`` answers with one object

    @extend_schema(
        responses={
            200: s.PortalKeySerializer,
            503: OpenApiResponse(ErrorBody, description="The portal has no signing key"),
        },
        summary="The portal's current public key (PEM) and key id",
    )
    def list(self, request: Request) -> Response:
        try:
            current = signing.ensure_portal_key_registered()
        except portal_keys.SigningKeyUnavailable as exc:
            return _unavailable(exc)
        previous = SigningKey.objects.filter(kind=SigningKey.Kind.PORTAL).exclude(pk=current.pk)
        return Response(
            {
                "key_id": current.key_id,
                "sslib_key_id": current.sslib_key_id,
                "public_key_pem": current.public_key_pem,
                "previous": [
                    {
                        "key_id": k.key_id,
                        "public_key_pem": k.public_key_pem,
                        "revoked": bool(k.revoked_at),
                    }
                    for k in previous
                ],
            }
        )
