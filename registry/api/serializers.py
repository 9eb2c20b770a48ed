"""Serializers are thin: they shape input and output; services do the writes."""

from __future__ import annotations

import copy
from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.permissions import Access
from registry import services, signing
from registry.api.fields import ScopedRelatedField
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

User = get_user_model()


def _access(serializer: serializers.Serializer) -> Access:
    return Access.for_request(serializer.context["request"])


def _known_related(obj: Any, name: str, items: Any) -> None:
    """Tell ``obj.<name>`` what it holds, as ``prefetch_related`` would, so serializing
    it costs no query (any add/remove through the relation drops this again)."""
    queryset = getattr(obj, name).all()
    queryset._result_cache = list({item.pk: item for item in items}.values())
    queryset._prefetch_done = True
    if not hasattr(obj, "_prefetched_objects_cache"):
        obj._prefetched_objects_cache = {}
    obj._prefetched_objects_cache[name] = queryset


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


def _copy_field(field: serializers.Field) -> serializers.Field:
    """A fresh, unbound copy of a built field, as cheap as it can safely be.

    A field is copied shallowly: binding the copy to a serializer sets attributes on the
    copy only, and what it shares (validators, messages, choices, a queryset) is never
    changed after it is built. A field holding one other field (a list of references,
    a list serializer, a list field) bound that child to itself when built: the copy gets
    a copy of the child, bound to it as the child was to the field. A nested serializer
    is rebuilt (``deepcopy``: DRF re-instantiates it)."""
    child_attr = "child_relation" if isinstance(field, serializers.ManyRelatedField) else "child"
    child = getattr(field, child_attr, None)
    if isinstance(child, serializers.Field):
        clone = copy.copy(field)
        copied = _copy_field(child)
        copied.parent = clone  # bound as the child was (field name "", same source)
        setattr(clone, child_attr, copied)
        return clone
    if isinstance(field, serializers.BaseSerializer):
        return copy.deepcopy(field)
    return copy.copy(field)


class ServiceSerializer(serializers.ModelSerializer):
    """Routes create/update to service functions named on the subclass."""

    create_service: Any = None
    update_service: Any = None
    parent_fields: tuple[str, ...] = ()

    def get_fields(self) -> dict[str, serializers.Field]:
        """The fields ModelSerializer builds from the model for every instance (every
        request: ~25 ``build_field`` calls here, most of a serializer's own cost), built
        once per class and copied (``_copy_field``)."""
        built = type(self).__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            type(self)._built_fields = built  # per class: a subclass builds its own
        return {name: _copy_field(field) for name, field in built.items()}

    def create(self, validated_data: dict[str, Any]) -> Any:
        return type(self).create_service(_access(self), **validated_data)

    def update(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        for name in self.parent_fields:
            if name in validated_data and validated_data[name] != getattr(instance, name):
                raise serializers.ValidationError({name: ["cannot be changed after creation"]})
            validated_data.pop(name, None)
        return type(self).update_service(_access(self), instance, **validated_data)


class UseCaseSerializer(ServiceSerializer):
    create_service = services.create_use_case
    update_service = services.update_use_case
    business_owner = UsernameField()
    technical_owner = UsernameField()
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

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
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
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


class AttestationBriefSerializer(serializers.ModelSerializer):
    """An attestation as shown on its artifact or evidence item."""

    signer_key_id = serializers.CharField(source="signer_key.key_id", read_only=True, default="")
    signer = serializers.SerializerMethodField()

    class Meta:
        model = Attestation
        fields = [
            "id",
            "verdict",
            "signer_key_id",
            "signer",
            "portal_signed",
            "predicate_type",
            "verified_at",
        ]
        read_only_fields = fields

    def get_signer(self, obj: Attestation) -> str:
        return signing.signer_label(obj)


class SignatureStatusMixin(serializers.Serializer):
    """Read-only signature status and attestations of an artifact or evidence item."""

    signature_status = serializers.SerializerMethodField()
    attestations = AttestationBriefSerializer(many=True, read_only=True)

    def get_signature_status(self, obj: Any) -> str:
        return signing.signature_status(obj.attestations.all())


class ArtifactSignatureSerializer(SignatureStatusMixin, serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["id", "name", "sha256", "signature_status", "attestations"]
        read_only_fields = fields


class EvidenceSignatureSerializer(SignatureStatusMixin, serializers.ModelSerializer):
    class Meta:
        model = Evidence
        fields = ["id", "kind", "title", "sha256", "signature_status", "attestations"]
        read_only_fields = fields


_MODEL_REFERENCE = Model.objects.select_related("use_case").only(
    "id", "name", "use_case_id", "use_case__id", "use_case__name"
)
_DATASET_VERSION_REFERENCE = DatasetVersion.objects.select_related("dataset").only(
    "id", "dataset_id", "use_case_id", "version", "created_at", "dataset__id", "dataset__name"
)


class ModelVersionSerializer(ServiceSerializer):
    """Register a version with its model card, metrics and dataset links in one call."""

    create_service = services.register_model_version
    update_service = services.update_model_version
    parent_fields = ("model",)
    # with its use case: the service checks the caller's rights on it. References read the
    # columns that registering needs (rights, labels, ordering), not the datasheets,
    # schemas and profiles; anything else is loaded if something asks for it.
    model = ScopedRelatedField(queryset=_MODEL_REFERENCE)
    use_case = serializers.PrimaryKeyRelatedField(read_only=True)
    parent = ScopedRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    training_datasets = ScopedRelatedField(
        queryset=_DATASET_VERSION_REFERENCE, many=True, required=False
    )
    validation_datasets = ScopedRelatedField(
        queryset=_DATASET_VERSION_REFERENCE, many=True, required=False
    )
    test_datasets = ScopedRelatedField(
        queryset=_DATASET_VERSION_REFERENCE, many=True, required=False
    )
    registered_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    display = serializers.CharField(source="__str__", read_only=True)
    artifacts = ArtifactSignatureSerializer(many=True, read_only=True)
    evidence = EvidenceSignatureSerializer(many=True, read_only=True)

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
            "artifacts",
            "evidence",
            "registered_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "created_at", "updated_at"]
        # (model, version) is unique: the service's full_clean checks it (the same
        # "non_field_errors" answer), so the serializer does not query it a second time.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> Any:
        version = super().create(validated_data)
        # The answer needs no reads: a version registered just now links exactly the
        # datasets it was given and has no artifacts or evidence yet. (Only this
        # response's instance is primed; the service returns a plain one.)
        for role in services.DATASET_ROLES:
            linked = list(validated_data.get(role) or ())
            linked.sort(key=lambda d: d.created_at, reverse=True)  # DatasetVersion's ordering:
            linked.sort(key=lambda d: d.dataset.name)  # by dataset name, newest first
            _known_related(version, role, linked)
        _known_related(version, "artifacts", ())
        _known_related(version, "evidence", ())
        return version


class EnvelopeField(serializers.JSONField):
    """A DSSE envelope: a JSON object, or its JSON text (e.g. a multipart form field)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("write_only", True)
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            "DSSE envelope (in-toto Statement v1) over this object's sha256, verified on receipt",
        )
        super().__init__(**kwargs)


class ModelVersionListSerializer(ModelVersionSerializer):
    """The list form: the model card and links, without nested artifacts and evidence."""

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            f for f in ModelVersionSerializer.Meta.fields if f not in ("artifacts", "evidence")
        ]


class EvidenceSerializer(SignatureStatusMixin, ServiceSerializer):
    create_service = services.add_evidence
    parent_fields = ("use_case", "model_version")
    use_case = ScopedRelatedField(queryset=UseCase.objects.all(), required=False)
    model_version = ScopedRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    envelope = EnvelopeField()

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
            "envelope",
            "signature_status",
            "attestations",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def create(self, validated_data: dict[str, Any]) -> Any:
        if "envelope" not in validated_data:
            return super().create(validated_data)
        return signing.add_evidence_with_attestation(_access(self), **validated_data)


class ArtifactSerializer(SignatureStatusMixin, ServiceSerializer):
    create_service = services.add_artifact
    parent_fields = ("model_version",)
    model_version = ScopedRelatedField(queryset=ModelVersion.objects.all())
    use_case = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    envelope = EnvelopeField()

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
            "envelope",
            "signature_status",
            "attestations",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def create(self, validated_data: dict[str, Any]) -> Any:
        if "envelope" not in validated_data:
            return super().create(validated_data)
        return signing.add_artifact_with_attestation(_access(self), **validated_data)


class DeploymentSerializer(ServiceSerializer):
    create_service = services.record_deployment
    parent_fields = ("model_version",)
    model_version = ScopedRelatedField(queryset=ModelVersion.objects.all())
    use_case = serializers.PrimaryKeyRelatedField(read_only=True)
    replaces = ScopedRelatedField(
        queryset=Deployment.objects.all(), required=False, allow_null=True
    )
    released_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
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


# ---------------------------------------------------------------- signing


class SigningKeySerializer(serializers.ModelSerializer):
    """A registered public key. Upload a PEM; the owner is the caller."""

    kind = serializers.ChoiceField(
        choices=SigningKey.Kind.choices,
        default=SigningKey.Kind.PERSON,
        help_text="person or pipeline when registering; portal keys are the portal's own",
    )
    public_key_pem = serializers.CharField(
        max_length=10_000, trim_whitespace=True, help_text="Ed25519 public key, PEM"
    )
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    revoked_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    revoked = serializers.SerializerMethodField()

    def validate_kind(self, value: str) -> str:
        if value == SigningKey.Kind.PORTAL:
            raise serializers.ValidationError(
                "portal keys are registered by the portal itself; use person or pipeline"
            )
        return value

    class Meta:
        model = SigningKey
        fields = [
            "id",
            "key_id",
            "sslib_key_id",
            "name",
            "kind",
            "public_key_pem",
            "owner",
            "created_by",
            "created_at",
            "revoked",
            "revoked_at",
            "revoked_reason",
            "revoked_by",
        ]
        read_only_fields = [
            "key_id",
            "sslib_key_id",
            "created_at",
            "revoked_at",
            "revoked_reason",
        ]

    def get_revoked(self, obj: SigningKey) -> bool:
        return obj.revoked_at is not None

    def to_representation(self, instance: SigningKey) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["kind"] = instance.kind  # the portal's own key reads as such
        return data

    def create(self, validated_data: dict[str, Any]) -> SigningKey:
        return signing.register_signing_key(_access(self), **validated_data)


class RevokeKeySerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)
    revoked_at = serializers.DateTimeField(
        required=False, help_text="when the key stopped being trustworthy (default: now)"
    )


class AttestationSerializer(serializers.ModelSerializer):
    signer_key_id = serializers.CharField(source="signer_key.key_id", read_only=True, default="")
    signer = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Attestation
        fields = [
            "id",
            "use_case",
            "artifact",
            "evidence",
            "payload_type",
            "predicate_type",
            "subject_sha256",
            "payload_sha256",
            "signer_key",
            "signer_key_id",
            "signer",
            "portal_signed",
            "verdict",
            "reason",
            "verified_at",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_signer(self, obj: Attestation) -> str:
        return signing.signer_label(obj)


class EnvelopeUploadSerializer(serializers.Serializer):
    envelope = EnvelopeField(required=True, write_only=False)


class PortalSignSerializer(serializers.Serializer):
    predicate_type = serializers.CharField(max_length=signing.MAX_PREDICATE_TYPE)
    predicate = serializers.JSONField(required=False, default=dict)


class PortalKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    sslib_key_id = serializers.CharField()
    public_key_pem = serializers.CharField()
    previous = serializers.ListField(child=serializers.DictField())
