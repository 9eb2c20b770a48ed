"""REST API of retraining jobs and templates. Rules live in ``workers.retraining``.

People (and pipelines) request, cancel and retry jobs; a running job, with its own token,
posts ``progress/`` and ``result/`` and downloads its dataset files from ``datasets/<id>/``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audits.models import AuditEvent
from audits.services import record_access
from portal.api.schema import ERRORS_READ, ERRORS_WRITE, ErrorBody
from portal.permissions import Access
from portal.security import attachment
from registry.api.fields import ScopedRelatedField
from registry.models import Model, ModelVersion
from workers import retraining
from workers.models import Incident, RetrainingJob, RetrainingTemplate


class RetrainingJobSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    dataset_versions = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    percent = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = RetrainingJob
        fields = [
            "id",
            "use_case",
            "model",
            "base_version",
            "trigger",
            "incident",
            "retry_of",
            "reason",
            "spec",
            "dataset_versions",
            "executor",
            "approval_environment",
            "key",
            "external_id",
            "state",
            "message",
            "exit_code",
            "progress",
            "percent",
            "progress_message",
            "log_tail",
            "approval",
            "release_approval",
            "produced_version",
            "result",
            "requested_by",
            "cancel_requested_at",
            "created_at",
            "submitted_at",
            "started_at",
            "finished_at",
            "updated_at",
            "url",
        ]
        read_only_fields = fields

    def get_url(self, obj: RetrainingJob) -> str:
        return obj.get_absolute_url()


class JobRequestSerializer(serializers.Serializer):
    model = ScopedRelatedField(queryset=Model.objects.all())
    base_version = ScopedRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    incident = ScopedRelatedField(queryset=Incident.objects.all(), required=False, allow_null=True)
    spec = serializers.JSONField(
        required=False, help_text="see workers.retraining.validate_spec; default: the template's"
    )
    executor = serializers.CharField(required=False, allow_blank=True)
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    approval_environment = serializers.CharField(required=False)
    trigger = serializers.ChoiceField(
        choices=["person", "schedule"],
        default="person",
        help_text="'schedule' for a scheduler (cron, CI) asking on a timetable",
    )


class JobReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class ProgressSerializer(serializers.Serializer):
    progress = serializers.FloatField(min_value=0.0, max_value=1.0)
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class ResultSerializer(serializers.Serializer):
    model_version = ScopedRelatedField(queryset=ModelVersion.objects.all())
    summary = serializers.JSONField(
        required=False, default=dict, help_text="what the job wants on its page (metrics, notes)"
    )


class TemplateSerializer(serializers.ModelSerializer):
    model = ScopedRelatedField(queryset=Model.objects.all())

    class Meta:
        model = RetrainingTemplate
        fields = [
            "id",
            "model",
            "use_case",
            "spec",
            "executor",
            "approval_environment",
            "enabled",
            "updated_at",
        ]
        read_only_fields = ["id", "use_case", "updated_at"]

    def create(self, validated_data: dict[str, Any]) -> RetrainingTemplate:
        request = self.context["request"]
        model = validated_data.pop("model")
        return retraining.set_template(Access.for_request(request), model, **validated_data)

    def update(self, instance: RetrainingTemplate, validated_data: dict[str, Any]) -> Any:
        request = self.context["request"]
        validated_data.pop("model", None)
        data = {
            "spec": instance.spec,
            "executor": instance.executor,
            "approval_environment": instance.approval_environment,
            "enabled": instance.enabled,
            **validated_data,
        }
        return retraining.set_template(Access.for_request(request), instance.model, **data)


def _conflict(exc: retraining.Conflict) -> Response:
    return Response(
        {"detail": str(exc), "errors": {exc.field: [str(exc)]}}, status=status.HTTP_409_CONFLICT
    )


@extend_schema_view(
    list=extend_schema(
        summary="List the retraining jobs you may see",
        responses={200: RetrainingJobSerializer(many=True), **ERRORS_READ},
    ),
    retrieve=extend_schema(
        summary="Read one retraining job", responses={200: RetrainingJobSerializer, **ERRORS_READ}
    ),
    create=extend_schema(
        summary="Request a retraining job (high-risk use cases: it waits for approval)",
        request=JobRequestSerializer,
        responses={201: RetrainingJobSerializer, **ERRORS_WRITE},
    ),
)
class RetrainingJobViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = RetrainingJob.objects.select_related("requested_by").prefetch_related(
        "dataset_versions"
    )
    serializer_class = RetrainingJobSerializer
    filterset_fields = ["model", "state", "executor", "incident", "trigger", "produced_version"]
    ordering_fields = ["created_at", "finished_at"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = JobRequestSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        d = dict(body.validated_data)
        job = retraining.request_job(
            Access.for_request(request),
            model=d["model"],
            trigger=d["trigger"],
            base_version=d.get("base_version"),
            incident=d.get("incident"),
            spec=d.get("spec"),
            executor=d.get("executor") or None,
            reason=d.get("reason", ""),
            approval_environment=d.get("approval_environment"),
        )
        job = self.get_queryset().get(pk=job.pk)
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)

    def _answer(self, job: RetrainingJob, code: int = 200) -> Response:
        job = self.get_queryset().get(pk=job.pk)
        return Response(self.get_serializer(job).data, status=code)

    @extend_schema(
        request=JobReasonSerializer,
        responses={200: RetrainingJobSerializer, **ERRORS_WRITE},
        summary="Cancel the job (stopped on its executor; ends when the executor says so)",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        body = JobReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            job = retraining.cancel(Access.for_request(request), job, **body.validated_data)
        except retraining.Conflict as exc:
            return _conflict(exc)
        return self._answer(job)

    @extend_schema(
        request=JobReasonSerializer,
        responses={201: RetrainingJobSerializer, **ERRORS_WRITE},
        summary="Run a failed, cancelled or lost job again (a new job with the same spec)",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        body = JobReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            new = retraining.retry(Access.for_request(request), job, **body.validated_data)
        except retraining.Conflict as exc:
            return _conflict(exc)
        return self._answer(new, status.HTTP_201_CREATED)

    @extend_schema(
        request=ProgressSerializer,
        responses={200: RetrainingJobSerializer, **ERRORS_WRITE},
        summary="The job reports its progress (the job's own token only)",
    )
    @action(detail=True, methods=["post"])
    def progress(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        body = ProgressSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            job = retraining.record_progress(job, request.auth, **body.validated_data)
        except retraining.Conflict as exc:
            return _conflict(exc)
        return self._answer(job)

    @extend_schema(
        request=ResultSerializer,
        responses={200: RetrainingJobSerializer, **ERRORS_WRITE},
        summary="The job posts the model version it produced (the job's own token only); "
        "Charter opens its approval request",
    )
    @action(detail=True, methods=["post"])
    def result(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        body = ResultSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        try:
            job = retraining.accept_result(job, request.auth, **body.validated_data)
        except retraining.Conflict as exc:
            return _conflict(exc)
        return self._answer(job)

    @extend_schema(
        parameters=[OpenApiParameter("tail", OpenApiTypes.INT, description="lines (default 200)")],
        responses={
            200: OpenApiResponse(OpenApiTypes.STR, description="the latest output"),
            **ERRORS_READ,
        },
        summary="The job's output, fresh from its executor",
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        try:
            tail = min(max(int(request.query_params.get("tail", 200)), 1), 5000)
        except ValueError:
            tail = 200
        text = job.log_tail
        if job.external_id:
            from workers import executors

            with contextlib.suppress(executors.ExecutorError):
                text = executors.get_executor(job.executor).logs(job.external_id, tail)
        return Response({"job": job.pk, "state": job.state, "logs": text})

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="the dataset version's file"
            ),
            404: OpenApiResponse(ErrorBody, description="Not a dataset of this job, or no file"),
            **{k: v for k, v in ERRORS_READ.items() if k != 404},
        },
        summary="Download one of the job's dataset files (audited as a download)",
    )
    @action(detail=True, methods=["get"], url_path=r"datasets/(?P<dv>[0-9]+)")
    def datasets(self, request: Request, pk: str | None = None, dv: str | None = None) -> Any:
        job = self.get_object()
        version = get_object_or_404(job.dataset_versions.all(), pk=dv)
        if not version.file:
            return Response(
                {"detail": "This dataset version has no uploaded file.", "errors": {}}, status=404
            )
        record_access(AuditEvent.Action.DOWNLOAD, actor=request.user, obj=version, job=job.pk)
        return attachment(version.file.open("rb"), version.file.name.rsplit("/", 1)[-1])


@extend_schema_view(
    list=extend_schema(
        summary="List retraining templates (how each model is retrained when asked)",
        responses={200: TemplateSerializer(many=True), **ERRORS_READ},
    ),
    retrieve=extend_schema(
        summary="Read one retraining template", responses={200: TemplateSerializer, **ERRORS_READ}
    ),
    create=extend_schema(
        summary="Set a model's retraining template (replaces the existing one)",
        responses={201: TemplateSerializer, **ERRORS_WRITE},
    ),
    partial_update=extend_schema(
        summary="Change a retraining template",
        responses={200: TemplateSerializer, **ERRORS_WRITE},
    ),
)
class RetrainingTemplateViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet
):
    queryset = RetrainingTemplate.objects.select_related("model")
    serializer_class = TemplateSerializer
    filterset_fields = ["model", "enabled"]
    http_method_names = ["get", "post", "patch", "head", "options"]


ROUTES = [
    ("retraining-jobs", RetrainingJobViewSet),
    ("retraining-templates", RetrainingTemplateViewSet),
]
