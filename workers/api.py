"""REST API of telemetry, drift and incidents. Rules live in ``workers.services`` and the input
checks in ``workers.schema``; these views only route, parse and answer.

Serving fleets post to ``/api/v1/deployments/<id>/telemetry/`` (columnar JSON, or a CSV /
Parquet file), ``…/profiles/`` (window profiles computed client-side) and ``…/labels/``.
Every post carries an idempotency key (body field ``idempotency_key`` or header
``Idempotency-Key``): a retry with the same body gets the original response
(``Idempotent-Replayed: true``), the same key with another body gets 409.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api.schema import ERRORS_READ, ERRORS_WRITE, ErrorBody
from portal.db.compiled import CompiledQuery
from portal.permissions import Access
from registry.api.fields import ScopedRelatedField
from registry.models import DatasetVersion, Deployment
from workers import schema, services
from workers.models import (
    AlertRule,
    DriftResult,
    Incident,
    IncidentEvent,
    MonitoringConfig,
    ReferenceProfile,
    TelemetryBatch,
    WindowProfile,
)

KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces


class TelemetryJSONParser(parsers.JSONParser):
    """JSON that lets ``NaN`` / ``Infinity`` through to the schema check, which names the
    feature and rows (the strict parser would only say the body is not JSON)."""

    strict = False


# ---------------------------------------------------------------- serializers


class ReferenceProfileSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = ReferenceProfile
        fields = [
            "id",
            "dataset_version",
            "use_case",
            "status",
            "source",
            "features",
            "prediction_column",
            "label_column",
            "rows",
            "sha256",
            "error",
            "created_by",
            "created_at",
            "updated_at",
            "profile",
        ]
        read_only_fields = fields


class ReferenceProfileInput(serializers.Serializer):
    profile = serializers.JSONField(
        required=False, help_text="workers.drift DatasetProfile.to_dict(); omit with compute"
    )
    compute = serializers.BooleanField(
        default=False, help_text="profile the dataset version's uploaded CSV/Parquet file"
    )
    prediction_column = serializers.CharField(required=False, allow_blank=True, default="")
    label_column = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["compute"] == ("profile" in attrs):
            raise serializers.ValidationError(
                {"profile": ["give either a profile or compute: true"]}
            )
        return attrs


class BatchSerializer(serializers.ModelSerializer):
    submitted_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = TelemetryBatch
        fields = [
            "id",
            "deployment",
            "use_case",
            "kind",
            "idempotency_key",
            "rows",
            "timestamp",
            "window_start",
            "window_end",
            "received_at",
            "folded_at",
            "result",
            "submitted_by",
        ]
        read_only_fields = fields


class WindowSerializer(serializers.ModelSerializer):
    class Meta:
        model = WindowProfile
        fields = [
            "id",
            "deployment",
            "use_case",
            "start",
            "end",
            "rows",
            "batches",
            "dirty",
            "updated_at",
            "profile",
            "predictions",
            "service",
        ]
        read_only_fields = fields


class DriftResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = DriftResult
        fields = [
            "id",
            "window",
            "deployment",
            "use_case",
            "window_start",
            "window_end",
            "rows",
            "dataset_drift",
            "share_drifted",
            "n_drifted",
            "features",
            "prediction",
            "quality",
            "service",
            "performance",
            "config",
            "computed_at",
        ]
        read_only_fields = fields


class MonitoringConfigSerializer(serializers.ModelSerializer):
    updated_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = MonitoringConfig
        fields = [
            "deployment",
            "window_seconds",
            "drift_config",
            "classification_threshold",
            "updated_by",
            "updated_at",
        ]
        read_only_fields = ["deployment", "updated_by", "updated_at"]
        extra_kwargs = {
            "window_seconds": {"required": False},
            "drift_config": {"required": False},
            "classification_threshold": {"required": False},
            # null while the deployment runs on the defaults (never configured)
            "updated_at": {"allow_null": True},
        }


class AlertRuleSerializer(serializers.ModelSerializer):
    deployment = ScopedRelatedField(queryset=Deployment.objects.all())
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "deployment",
            "use_case",
            "name",
            "kind",
            "feature",
            "metric",
            "threshold",
            "min_rows",
            "severity",
            "action",
            "enabled",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["use_case", "created_by", "created_at", "updated_at"]

    def create(self, validated_data: dict[str, Any]) -> AlertRule:
        deployment = validated_data.pop("deployment")
        return services.create_alert_rule(
            Access.for_request(self.context["request"]), deployment, **validated_data
        )

    def update(self, instance: AlertRule, validated_data: dict[str, Any]) -> AlertRule:
        deployment = validated_data.pop("deployment", instance.deployment)
        if deployment != instance.deployment:
            raise serializers.ValidationError({"deployment": ["cannot be changed"]})
        return services.update_alert_rule(
            Access.for_request(self.context["request"]), instance, **validated_data
        )


class IncidentEventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = IncidentEvent
        fields = ["id", "kind", "text", "data", "actor", "at"]


class IncidentSerializer(serializers.ModelSerializer):
    deployment = ScopedRelatedField(queryset=Deployment.objects.all())
    opened_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    acknowledged_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    closed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    events = IncidentEventSerializer(many=True, read_only=True)

    class Meta:
        model = Incident
        fields = [
            "id",
            "use_case",
            "deployment",
            "rule",
            "title",
            "description",
            "severity",
            "status",
            "details",
            "occurrences",
            "opened_at",
            "last_seen_at",
            "opened_by",
            "acknowledged_at",
            "acknowledged_by",
            "closed_at",
            "closed_by",
            "resolution",
            "retraining_requested",
            "rollback_review",
            "events",
        ]
        read_only_fields = [
            f for f in fields if f not in ("deployment", "title", "description", "severity")
        ]

    def create(self, validated_data: dict[str, Any]) -> Incident:
        return services.open_incident(
            Access.for_request(self.context["request"]),
            validated_data.pop("deployment"),
            **validated_data,
        )


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class CloseSerializer(serializers.Serializer):
    resolution = serializers.CharField(max_length=5000)


class CommentSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=5000)


# -- request bodies, for the OpenAPI description only


class TelemetryRowsBody(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=200)
    features = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField()),
        help_text="feature name -> values (exactly the reference profile's input features)",
    )
    predictions = serializers.ListField(child=serializers.JSONField(), required=False)
    prediction_ids = serializers.ListField(child=serializers.CharField(), required=False)
    latency_ms = serializers.ListField(child=serializers.FloatField(), required=False)
    errors = serializers.IntegerField(required=False, help_text="how many of the rows failed")
    timestamp = serializers.DateTimeField(required=False, help_text="default: now")


class TelemetryFileBody(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=200)
    file = serializers.FileField(
        help_text="CSV or Parquet: the input features, optionally prediction, prediction_id, "
        "latency_ms columns"
    )
    timestamp = serializers.DateTimeField(required=False)


class ProfileBody(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=200)
    profile = serializers.JSONField(help_text="window_profile(reference) folded by the client")
    predictions = serializers.JSONField(required=False, help_text="a FeatureProfile")
    service = serializers.JSONField(required=False, help_text="a ServiceMetrics")
    timestamp = serializers.DateTimeField(required=False)


class LabelsBody(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=200)
    prediction_ids = serializers.ListField(child=serializers.CharField())
    labels = serializers.ListField(child=serializers.JSONField())


BatchAccepted = OpenApiResponse(
    BatchSerializer, description="Stored and queued (or replayed: the original response)"
)


# ---------------------------------------------------------------- helpers


def _error(status_code: int, detail: str, errors: dict[str, list[str]]) -> Response:
    return Response({"detail": detail, "errors": errors}, status=status_code)


def _conflict(exc: services.Conflict) -> Response:
    return _error(status.HTTP_409_CONFLICT, str(exc), {exc.field: [str(exc)]})


def _too_large(limit: int, length: int) -> Response:
    return _error(
        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        f"Request body is {length} bytes; the telemetry limit is {limit} bytes.",
        {"body": [f"larger than {limit} bytes"]},
    )


def _deployments() -> QuerySet:
    return Deployment.objects.select_related("use_case", "model_version", "monitoring")


# Every telemetry post reads its deployment: the statement is compiled once per process.
_DEPLOYMENT = CompiledQuery(lambda pk: _deployments().filter(pk=pk))


def _visible_deployment(request: Request, pk: int) -> Deployment:
    access = Access.for_request(request)
    visible = access.visible_ids() if connection.vendor == "postgresql" else False
    if visible is False:  # rights known only as a subquery (or not PostgreSQL): the ORM's way
        return get_object_or_404(access.filter(_deployments()), pk=pk)
    low, high = connection.ops.integer_field_range(Deployment._meta.pk.get_internal_type())
    found = _DEPLOYMENT.first(pk) if low <= pk <= high else None
    if found is None or (visible is not None and found.use_case_id not in visible):
        raise Http404("No deployment matches the given query.")
    return found


def _content_length(request: Request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class _IntakeView(APIView):
    """Shared flow of the three intake endpoints (see the module docstring)."""

    kind = ""
    parser_classes = [TelemetryJSONParser]

    def limit(self, request: Request) -> int:
        return settings.CHARTER_TELEMETRY_MAX_BODY_BYTES

    # Each endpoint (telemetry rows, window profiles, labels) defines its own check of the
    # body against the baseline: (fields for the batch row, the parsed payload), or a 400.
    check: Callable[[Request, ReferenceProfile], tuple[dict[str, Any], Any]]

    def digest(self, request: Request) -> str:
        return services.digest_json(request.data)

    def post(self, request: Request, pk: int) -> Response:
        limit, length = self.limit(request), _content_length(request)
        if length > limit:
            return _too_large(limit, length)
        deployment = _visible_deployment(request, pk)
        access = Access.for_request(request)
        access.require_contribute(deployment.use_case)
        data = request.data
        key = data.get("idempotency_key") if hasattr(data, "get") else None
        key = key or request.headers.get("Idempotency-Key")
        if not key:
            return _error(
                400,
                "Invalid input.",
                {"idempotency_key": ["required (body field or Idempotency-Key header)"]},
            )
        if not isinstance(key, str) or not KEY.match(key):
            return _error(
                400,
                "Invalid input.",
                {"idempotency_key": ["1 to 200 printable ASCII characters, no spaces"]},
            )
        digest = self.digest(request)
        # A repeat of a key answers what the first delivery did (or 409 for another body).
        # It is looked for first only for a file, which would otherwise be stored before
        # the batch's unique key refuses it; a JSON batch is simply stored, and a repeat is
        # found when its key is refused (accept_batch) or, before an error answer, here:
        # the usual first delivery costs no lookup, and a repeat answers as before.
        lookup = request.content_type.startswith("multipart/")
        try:
            if lookup and (replay := self.repeat(deployment, key, digest)) is not None:
                return replay
            ref = services.reference_for(deployment, defer_profile=True)
            if ref is None and self.kind != TelemetryBatch.Kind.LABELS:
                return self.repeat(deployment, key, digest) or _error(
                    409,
                    "The deployment has no drift baseline: its model version's training "
                    "dataset version needs a ready reference profile.",
                    {"deployment": ["no reference profile"]},
                )
            try:
                payload, file = self.check(request, ref)
                timestamp = services.check_timestamp(data.get("timestamp"))
            except (schema.TelemetryRejected, ValidationError) as exc:
                if (replay := self.repeat(deployment, key, digest)) is not None:
                    return replay
                if isinstance(exc, ValidationError):
                    raise
                code = 413 if exc.too_large else 400
                return _error(code, "Too large." if exc.too_large else "Invalid input.", exc.errors)
            batch, replayed = services.accept_batch(
                access,
                deployment,
                kind=self.kind,
                key=key,
                digest=digest,
                rows=payload.pop("rows"),
                timestamp=timestamp,
                payload=payload if file is None else None,
                file=file,
                looked_up=True,
            )
        except services.Conflict as exc:
            return _conflict(exc)
        return self.answer(batch, replayed=replayed)

    def repeat(self, deployment: Deployment, key: str, digest: str) -> Response | None:
        """The answer to a repeated key: the first delivery's (409 for another body)."""
        found = services.existing_batch(deployment, key)
        return None if found is None else self.answer(services.replay(found, digest), replayed=True)

    def answer(self, batch: TelemetryBatch, *, replayed: bool) -> Response:
        body = services.answer_body(batch)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)


@extend_schema_view(
    post=extend_schema(
        summary="Post a telemetry batch (columnar JSON, or a CSV/Parquet file as multipart)",
        request={"application/json": TelemetryRowsBody, "multipart/form-data": TelemetryFileBody},
        responses={202: BatchAccepted, **ERRORS_WRITE},
    )
)
class TelemetryView(_IntakeView):
    parser_classes = [TelemetryJSONParser, parsers.MultiPartParser]

    @property
    def kind(self) -> str:  # type: ignore[override]
        if self.request.content_type.startswith("multipart/"):
            return TelemetryBatch.Kind.FILE
        return TelemetryBatch.Kind.ROWS

    def limit(self, request: Request) -> int:
        if request.content_type.startswith("multipart/"):
            return settings.CHARTER_TELEMETRY_MAX_UPLOAD_BYTES
        return settings.CHARTER_TELEMETRY_MAX_BODY_BYTES

    def digest(self, request: Request) -> str:
        upload = request.FILES.get("file") if hasattr(request, "FILES") else None
        if upload is None:
            return services.digest_json(request.data)
        h = hashlib.sha256()
        for chunk in upload.chunks():
            h.update(chunk)
        upload.seek(0)
        fields = {k: request.data.get(k) for k in ("idempotency_key", "timestamp")}
        return services.digest_json({"file_sha256": h.hexdigest(), **fields})

    def check(self, request: Request, ref: ReferenceProfile) -> tuple[dict[str, Any], Any]:
        s = services.schema_for(ref)
        upload = request.FILES.get("file")
        if upload is None:
            if request.content_type.startswith("multipart/"):
                raise schema.TelemetryRejected({"file": ["required: a CSV or Parquet file"]})
            return schema.check_rows(request.data, s, settings.CHARTER_TELEMETRY_MAX_ROWS), None
        unknown = sorted(set(request.data) - {"idempotency_key", "timestamp", "file"})
        if unknown:
            raise schema.TelemetryRejected({k: ["unknown field"] for k in unknown})
        try:
            columns = services.read_table(upload, upload.name or "")
        except Exception as exc:  # pyarrow's errors for a file it cannot read
            if isinstance(exc, ValueError) or exc.__class__.__module__.startswith("pyarrow"):
                raise schema.TelemetryRejected({"file": [f"cannot read it: {exc}"]}) from None
            raise
        upload.seek(0)
        checked = schema.check_columns(columns, s, settings.CHARTER_TELEMETRY_MAX_UPLOAD_ROWS)
        return checked, upload


@extend_schema_view(
    post=extend_schema(
        summary="Post a window profile computed client-side on the reference's bins",
        request=ProfileBody,
        responses={202: BatchAccepted, **ERRORS_WRITE},
    )
)
class ProfilesView(_IntakeView):
    kind = TelemetryBatch.Kind.PROFILE

    def check(self, request: Request, ref: ReferenceProfile) -> tuple[dict[str, Any], Any]:
        s = services.schema_for(ref)
        checked = schema.check_profile(request.data, s, services.inputs_of(ref))
        payload = {
            "profile": request.data["profile"],
            "predictions": request.data.get("predictions"),
            "service": request.data.get("service"),
            "rows": checked["rows"],
        }
        return payload, None


@extend_schema_view(
    post=extend_schema(
        summary="Post labels that arrived later, joined to predictions by prediction id",
        request=LabelsBody,
        responses={202: BatchAccepted, **ERRORS_WRITE},
    )
)
class LabelsView(_IntakeView):
    kind = TelemetryBatch.Kind.LABELS

    def check(self, request: Request, ref: ReferenceProfile | None) -> tuple[dict[str, Any], Any]:
        return schema.check_labels(request.data, settings.CHARTER_TELEMETRY_MAX_ROWS), None


class ReferenceProfileView(APIView):
    """``GET|POST /api/v1/dataset-versions/<id>/reference-profile/``."""

    parser_classes = [parsers.JSONParser]

    def _version(self, request: Request, pk: int) -> DatasetVersion:
        access = Access.for_request(request)
        return get_object_or_404(
            access.filter(DatasetVersion.objects.select_related("use_case")), pk=pk
        )

    @extend_schema(
        summary="The dataset version's reference profile (drift baseline)",
        responses={200: ReferenceProfileSerializer, **ERRORS_READ},
    )
    def get(self, request: Request, pk: int) -> Response:
        version = self._version(request, pk)
        ref = get_object_or_404(ReferenceProfile, dataset_version=version)
        return Response(ReferenceProfileSerializer(ref).data)

    @extend_schema(
        summary="Set the reference profile: post one computed client-side, or compute it "
        "from the uploaded file (a worker does; status 'pending' until then)",
        request=ReferenceProfileInput,
        responses={
            201: ReferenceProfileSerializer,
            202: ReferenceProfileSerializer,
            **ERRORS_WRITE,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        version = self._version(request, pk)
        access = Access.for_request(request)
        access.require_contribute(version.use_case)
        body = ReferenceProfileInput(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        columns = {"prediction_column": d["prediction_column"], "label_column": d["label_column"]}
        try:
            if d["compute"]:
                ref = services.request_reference_profile(access, version, **columns)
                ref.refresh_from_db()
                code = status.HTTP_202_ACCEPTED if ref.status == "pending" else 201
            else:
                ref = services.set_reference_profile(
                    access, version, profile=d["profile"], **columns
                )
                code = status.HTTP_201_CREATED
        except services.Conflict as exc:
            return _conflict(exc)
        return Response(ReferenceProfileSerializer(ref).data, status=code)


class MonitoringConfigView(APIView):
    """``GET|PATCH /api/v1/deployments/<id>/monitoring-config/``."""

    @extend_schema(
        summary="The deployment's monitoring configuration",
        responses={200: MonitoringConfigSerializer, **ERRORS_READ},
    )
    def get(self, request: Request, pk: int) -> Response:
        deployment = _visible_deployment(request, pk)
        return Response(MonitoringConfigSerializer(services.config_for(deployment)).data)

    @extend_schema(
        summary="Change the window length, drift method/threshold overrides (per kind and per "
        "feature) or the classification threshold",
        request=MonitoringConfigSerializer,
        responses={200: MonitoringConfigSerializer, **ERRORS_WRITE},
    )
    def patch(self, request: Request, pk: int) -> Response:
        deployment = _visible_deployment(request, pk)
        body = MonitoringConfigSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        cfg = services.update_monitoring_config(
            Access.for_request(request), deployment, **body.validated_data
        )
        return Response(MonitoringConfigSerializer(cfg).data)


class EvaluateView(APIView):
    """``POST /api/v1/deployments/<id>/evaluate/``: evaluate the latest window now."""

    @extend_schema(
        summary="Evaluate the deployment's latest window now (drift, quality, service, labels); "
        "alert rules run only on closed windows",
        request=None,
        responses={
            200: DriftResultSerializer,
            404: OpenApiResponse(ErrorBody, description="No such deployment, or no window"),
            **ERRORS_WRITE,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        deployment = _visible_deployment(request, pk)
        Access.for_request(request).require_contribute(deployment.use_case)
        window = WindowProfile.objects.filter(deployment=deployment).order_by("-start").first()
        if window is None:
            return _error(404, "The deployment has no telemetry yet.", {})
        result = services.evaluate_window(window.pk)
        return Response(DriftResultSerializer(result).data)


# ---------------------------------------------------------------- viewsets


def _list_docs(plural: str, one: str, serializer: Any) -> dict[str, Any]:
    return {
        "list": extend_schema(
            summary=f"List the {plural} you may see",
            responses={200: serializer(many=True), **ERRORS_READ},
        ),
        "retrieve": extend_schema(
            summary=f"Read one {one}", responses={200: serializer, **ERRORS_READ}
        ),
    }


@extend_schema_view(**_list_docs("telemetry batches", "telemetry batch", BatchSerializer))
class TelemetryBatchViewSet(viewsets.ReadOnlyModelViewSet):
    """Batches received and not yet pruned: is mine folded, what did the fold say."""

    queryset = TelemetryBatch.objects.select_related("submitted_by").defer("payload")
    serializer_class = BatchSerializer
    filterset_fields = ["deployment", "kind", "idempotency_key"]
    ordering_fields = ["received_at", "folded_at"]


@extend_schema_view(**_list_docs("telemetry windows", "telemetry window", WindowSerializer))
class WindowViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = WindowProfile.objects.all()
    serializer_class = WindowSerializer
    filterset_fields = ["deployment"]
    ordering_fields = ["start"]


@extend_schema_view(**_list_docs("drift results", "drift result", DriftResultSerializer))
class DriftResultViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = DriftResult.objects.all()
    serializer_class = DriftResultSerializer
    filterset_fields = ["deployment", "dataset_drift"]
    ordering_fields = ["window_start"]


@extend_schema_view(
    **_list_docs("alert rules", "alert rule", AlertRuleSerializer),
    create=extend_schema(
        summary="Create an alert rule", responses={201: AlertRuleSerializer, **ERRORS_WRITE}
    ),
    partial_update=extend_schema(
        summary="Change an alert rule (disable with enabled: false)",
        responses={200: AlertRuleSerializer, **ERRORS_WRITE},
    ),
)
class AlertRuleViewSet(
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.ReadOnlyModelViewSet,
):
    queryset = AlertRule.objects.select_related("created_by", "deployment")
    serializer_class = AlertRuleSerializer
    filterset_fields = ["deployment", "kind", "enabled"]
    http_method_names = ["get", "post", "patch", "head", "options"]


@extend_schema_view(
    **_list_docs("incidents", "incident (with its timeline)", IncidentSerializer),
    create=extend_schema(
        summary="Report an incident on a deployment",
        responses={201: IncidentSerializer, **ERRORS_WRITE},
    ),
)
class IncidentViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Incident.objects.select_related(
        "opened_by", "acknowledged_by", "closed_by"
    ).prefetch_related("events__actor")
    serializer_class = IncidentSerializer
    filterset_fields = ["deployment", "status", "severity", "rule"]
    ordering_fields = ["opened_at", "last_seen_at", "severity"]

    def get_queryset(self) -> QuerySet[Incident]:
        qs = super().get_queryset()
        state = self.request.query_params.get("open")
        if state in ("true", "1"):
            qs = qs.filter(closed_at__isnull=True)
        elif state in ("false", "0"):
            qs = qs.filter(closed_at__isnull=False)
        return qs

    def _act(self, request: Request, run: Any, body_class: Any = None) -> Response:
        incident = self.get_object()
        data: dict[str, Any] = {}
        if body_class is not None:
            body = body_class(data=request.data)
            body.is_valid(raise_exception=True)
            data = dict(body.validated_data)
        try:
            run(Access.for_request(request), incident, **data)
        except services.Conflict as exc:
            return _conflict(exc)
        incident = self.get_queryset().get(pk=incident.pk)
        return Response(self.get_serializer(incident).data)

    @extend_schema(
        request=NoteSerializer,
        responses={200: IncidentSerializer, **ERRORS_WRITE},
        summary="Acknowledge an open incident",
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.acknowledge_incident, NoteSerializer)

    @extend_schema(
        request=CloseSerializer,
        responses={200: IncidentSerializer, **ERRORS_WRITE},
        summary="Close an incident with its resolution",
    )
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.close_incident, CloseSerializer)

    @extend_schema(
        request=CommentSerializer,
        responses={200: IncidentSerializer, **ERRORS_WRITE},
        summary="Add a comment to the incident's timeline",
    )
    @action(detail=True, methods=["post"])
    def comment(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.comment_incident, CommentSerializer)

    @extend_schema(
        request=NoteSerializer,
        responses={200: IncidentSerializer, **ERRORS_WRITE},
        summary="Request a retraining job (recorded; the retraining service picks it up)",
    )
    @action(detail=True, methods=["post"], url_path="request-retraining")
    def request_retraining(self, request: Request, pk: str | None = None) -> Response:
        def run(access: Access, incident: Incident, note: str = "") -> Incident:
            return services.request_retraining(access, incident, reason=note)

        return self._act(request, run, NoteSerializer)

    @extend_schema(
        request=NoteSerializer,
        responses={200: IncidentSerializer, **ERRORS_WRITE},
        summary="Flag the incident's deployment for rollback review",
    )
    @action(detail=True, methods=["post"], url_path="rollback-review")
    def rollback_review(self, request: Request, pk: str | None = None) -> Response:
        def run(access: Access, incident: Incident, note: str = "") -> Incident:
            return services.flag_rollback_review(access, incident, reason=note)

        return self._act(request, run, NoteSerializer)


ROUTES = [
    ("telemetry-batches", TelemetryBatchViewSet),
    ("telemetry-windows", WindowViewSet),
    ("drift-results", DriftResultViewSet),
    ("alert-rules", AlertRuleViewSet),
    ("incidents", IncidentViewSet),
]

__all__ = [
    "ROUTES",
    "EvaluateView",
    "LabelsView",
    "MonitoringConfigView",
    "ProfilesView",
    "ReferenceProfileView",
    "TelemetryView",
]
