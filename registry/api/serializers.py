"""Serializers are thin: they shape input and output; services do the writes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.permissions import Access
from registry import services
from registry.api.fields import ScopedRelatedField
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

User = get_user_model()


def _access(serializer: serializers.Serializer) -> Access:
    return Access.for_request(serializer.context["request"])


class Brief(serializers.Serializer):
    id = serializers.IntegerField()
    display = serializers.CharField()


class BriefField(serializers.Field):
    """A compact nested form (id + display) of a related object."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> dict[str, Any]:
        return {"id": value.pk, "display": str(value)}


extend_schema_field(Brief)(BriefField)


class UsernameField(serializers.SlugRelatedField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "username")
        kwargs.setdefault("queryset", User.objects.filter(is_active=True))
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


class TransitionSerializer(serializers.Serializer):
    status = serializers.CharField(max_length=20)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ServiceSerializer(serializers.ModelSerializer):
    """Routes create/update to service functions named on the subclass."""

    create_service: Any = None
    update_service: Any = None
    parent_fields: tuple[str, ...] = ()

    def create(self, validated_data: dict[str, Any]) -> Any:
        return type(self).create_service(_access(self), **validated_data)

    def update(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        for name in self.parent_fields:
            if name in validated_data and validated_data[name] != getattr(instance, name):
                raise serializers.ValidationError({name: "cannot be changed after creation"})
            validated_data.pop(name, None)
        return type(self).update_service(_access(self), instance, **validated_data)


class UseCaseSerializer(ServiceSerializer):
    create_service = services.create_use_case
    update_service = services.update_use_case
    business_owner = UsernameField()
    technical_owner = UsernameField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = UseCase
        fields = [
            "id",
            "name",
            "purpose",
            "business_owner",
            "technical_owner",
            "affected_people",
            "decision_impact",
            "personal_data",
            "sensitive_data",
            "risk_tier",
            "risk_rationale",
            "human_oversight",
            "status",
            "review_cadence_days",
            "next_review_date",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "created_at", "updated_at"]


class DatasetSerializer(ServiceSerializer):
    create_service = services.create_dataset
    update_service = services.update_dataset
    parent_fields = ("use_case",)
    use_case = ScopedRelatedField(queryset=UseCase.objects.all())
    owner = UsernameField()

    class Meta:
        model = Dataset
        fields = ["id", "use_case", "name", "description", "owner", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class DatasetVersionSerializer(ServiceSerializer):
    create_service = services.create_dataset_version
    update_service = services.update_dataset_version
    parent_fields = ("dataset",)
    dataset = ScopedRelatedField(queryset=Dataset.objects.all())
    use_case = serializers.PrimaryKeyRelatedField(read_only=True)
    derived_from = ScopedRelatedField(
        queryset=DatasetVersion.objects.all(), many=True, required=False
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    display = serializers.CharField(source="__str__", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "display",
            "dataset",
            "use_case",
            "version",
            *DatasetVersion.DATASHEET_FIELDS,
            "license",
            "sensitivity",
            "uri",
            "sha256",
            "size_bytes",
            "row_count",
            "schema",
            "quality_summary",
            "file",
            "summary_status",
            "derived_from",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["summary_status", "quality_summary", "created_at", "updated_at"]
        extra_kwargs = {"file": {"required": False, "write_only": True}}


class ModelSerializer(ServiceSerializer):
    create_service = services.create_model
    update_service = services.update_model
    parent_fields = ("use_case",)
    use_case = ScopedRelatedField(queryset=UseCase.objects.all())
    owner = UsernameField()

    class Meta:
        model = Model
        fields = [
            "id",
            "use_case",
            "name",
            "description",
            "task",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class ModelVersionSerializer(ServiceSerializer):
    """Register a version with its model card, metrics and dataset links in one call."""

    create_service = services.register_model_version
    update_service = services.update_model_version
    parent_fields = ("model",)
    model = ScopedRelatedField(queryset=Model.objects.all())
    use_case = serializers.PrimaryKeyRelatedField(read_only=True)
    parent = ScopedRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    training_datasets = ScopedRelatedField(
        queryset=DatasetVersion.objects.all(), many=True, required=False
    )
    validation_datasets = ScopedRelatedField(
        queryset=DatasetVersion.objects.all(), many=True, required=False
    )
    test_datasets = ScopedRelatedField(
        queryset=DatasetVersion.objects.all(), many=True, required=False
    )
    registered_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    display = serializers.CharField(source="__str__", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "display",
            "model",
            "use_case",
            "version",
            *ModelVersion.MODEL_CARD_FIELDS,
            "training_datasets",
            "validation_datasets",
            "test_datasets",
            "code_repository",
            "code_commit",
            "parameters",
            "environment",
            "metrics",
            "subgroup_metrics",
            "parent",
            "status",
            "registered_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "created_at", "updated_at"]


class EvidenceSerializer(ServiceSerializer):
    create_service = services.add_evidence
    parent_fields = ("use_case", "model_version")
    use_case = ScopedRelatedField(queryset=UseCase.objects.all(), required=False)
    model_version = ScopedRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Evidence
        fields = [
            "id",
            "use_case",
            "model_version",
            "kind",
            "title",
            "summary",
            "uri",
            "sha256",
            "size_bytes",
            "media_type",
            "data",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class ArtifactSerializer(ServiceSerializer):
    create_service = services.add_artifact
    parent_fields = ("model_version",)
    model_version = ScopedRelatedField(queryset=ModelVersion.objects.all())
    use_case = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Artifact
        fields = [
            "id",
            "model_version",
            "use_case",
            "name",
            "uri",
            "sha256",
            "size_bytes",
            "media_type",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class DeploymentSerializer(ServiceSerializer):
    create_service = services.record_deployment
    parent_fields = ("model_version",)
    model_version = ScopedRelatedField(queryset=ModelVersion.objects.all())
    use_case = serializers.PrimaryKeyRelatedField(read_only=True)
    replaces = ScopedRelatedField(
        queryset=Deployment.objects.all(), required=False, allow_null=True
    )
    released_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    released_at = serializers.DateTimeField(required=False)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "model_version",
            "use_case",
            "environment",
            "region",
            "strategy",
            "traffic_share",
            "endpoint",
            "replaces",
            "status",
            "notes",
            "released_by",
            "released_at",
            "created_at",
        ]
        read_only_fields = ["status", "created_at"]
