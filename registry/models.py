"""The governance registry: use cases and everything built for them.

Every object below a use case carries a ``use_case`` foreign key (set by the
service layer), so one index-friendly ``use_case_id IN (…)`` filter decides
visibility for all of them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.urls import reverse
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from registry.validators import (
    validate_json_object,
    validate_metrics,
    validate_schema,
    validate_subgroup_metrics,
)

sha256_validator = RegexValidator(r"^[0-9a-f]{64}$", "must be 64 lowercase hex characters")
User = settings.AUTH_USER_MODEL


class RiskTier(models.TextChoices):
    UNACCEPTABLE = "unacceptable", "Unacceptable"
    HIGH = "high", "High"
    LIMITED = "limited", "Limited"
    MINIMAL = "minimal", "Minimal"


class UseCase(models.Model):
    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        ASSESSED = "assessed", "Assessed"
        APPROVED = "approved", "Approved"
        IN_PRODUCTION = "in_production", "In production"
        UNDER_REVIEW = "under_review", "Under review"
        RETIRED = "retired", "Retired"

    class DecisionImpact(models.TextChoices):
        ADVISORY = "advisory", "Advisory (a person decides)"
        AUTOMATED = "automated", "Automated decision"

    TRANSITIONS = {
        "proposed": {"assessed", "retired"},
        "assessed": {"approved", "proposed", "retired"},
        "approved": {"in_production", "under_review", "retired"},
        "in_production": {"under_review", "retired"},
        "under_review": {"approved", "in_production", "retired"},
        "retired": set(),
    }

    name = models.CharField(max_length=200, unique=True)
    purpose = models.TextField()
    business_owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    technical_owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    affected_people = models.TextField(blank=True)
    decision_impact = models.CharField(
        max_length=20, choices=DecisionImpact.choices, default=DecisionImpact.ADVISORY
    )
    personal_data = models.BooleanField(default=False)
    sensitive_data = models.BooleanField(default=False)
    risk_tier = models.CharField(max_length=20, choices=RiskTier.choices, default=RiskTier.MINIMAL)
    risk_rationale = models.TextField(blank=True)
    human_oversight = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PROPOSED)
    review_cadence_days = models.PositiveIntegerField(
        default=365, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    next_review_date = models.DateField(null=True, blank=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["risk_tier", "status"])]
        permissions = [
            ("contribute_usecase", "Can register datasets, models and evidence under the use case"),
            ("manage_access", "Can grant access and manage tokens and service accounts"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("usecase-detail", args=[self.pk])

    @property
    def use_case_id(self) -> int:  # uniform access for the permission core
        return self.pk


class UseCaseUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(UseCase, on_delete=models.CASCADE)


class UseCaseGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(UseCase, on_delete=models.CASCADE)


class Dataset(models.Model):
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["use_case", "name"], name="dataset_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dataset-detail", args=[self.pk])


class DatasetVersion(models.Model):
    """A version of a dataset with its datasheet (Gebru et al. sections)."""

    class Sensitivity(models.TextChoices):
        PUBLIC = "public", "Public"
        INTERNAL = "internal", "Internal"
        CONFIDENTIAL = "confidential", "Confidential"
        RESTRICTED = "restricted", "Restricted (personal or sensitive data)"

    class SummaryStatus(models.TextChoices):
        NONE = "none", "No file"
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    version = models.CharField(max_length=64)
    # Datasheet
    motivation = models.TextField(blank=True)
    composition = models.TextField(blank=True)
    collection_process = models.TextField(blank=True)
    preprocessing = models.TextField("preprocessing / labelling", blank=True)
    uses = models.TextField(blank=True)
    distribution = models.TextField(blank=True)
    maintenance = models.TextField(blank=True)
    license = models.CharField(max_length=200, blank=True)
    sensitivity = models.CharField(
        max_length=20, choices=Sensitivity.choices, default=Sensitivity.INTERNAL
    )
    # Physical facts
    uri = models.CharField(max_length=1000, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, validators=[sha256_validator])
    size_bytes = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    row_count = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    schema = models.JSONField(default=list, blank=True, validators=[validate_schema])
    quality_summary = models.JSONField(default=dict, blank=True, validators=[validate_json_object])
    file = models.FileField(upload_to="datasets/%Y/%m/", blank=True)
    summary_status = models.CharField(
        max_length=20, choices=SummaryStatus.choices, default=SummaryStatus.NONE
    )
    derived_from = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="derivatives"
    )
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    DATASHEET_FIELDS = (
        "motivation",
        "composition",
        "collection_process",
        "preprocessing",
        "uses",
        "distribution",
        "maintenance",
    )

    class Meta:
        ordering = ["dataset__name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "version"], name="datasetversion_unique")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name}@{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("datasetversion-detail", args=[self.pk])

    @property
    def is_sensitive(self) -> bool:
        return self.sensitivity in {self.Sensitivity.CONFIDENTIAL, self.Sensitivity.RESTRICTED}


class Model(models.Model):
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="models")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=100, blank=True, help_text="e.g. binary classification")
    owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["use_case", "name"], name="model_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("model-detail", args=[self.pk])


class ModelVersion(models.Model):
    """A trained model version with its model card."""

    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        DEPLOYED = "deployed", "Deployed"
        DEPRECATED = "deprecated", "Deprecated"
        RETIRED = "retired", "Retired"

    TRANSITIONS = {
        "registered": {"in_review", "retired"},
        "in_review": {"approved", "registered", "retired"},
        "approved": {"deployed", "deprecated", "registered"},
        "deployed": {"deprecated"},
        "deprecated": {"deployed", "retired"},
        "retired": set(),
    }
    MODEL_CARD_FIELDS = (
        "intended_use",
        "out_of_scope_uses",
        "limitations",
        "ethical_considerations",
    )

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="versions")
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    version = models.CharField(max_length=64)
    # Model card
    intended_use = models.TextField(blank=True)
    out_of_scope_uses = models.TextField(blank=True)
    limitations = models.TextField(blank=True)
    ethical_considerations = models.TextField(blank=True)
    training_datasets = models.ManyToManyField(
        DatasetVersion, blank=True, related_name="trained_model_versions"
    )
    validation_datasets = models.ManyToManyField(
        DatasetVersion, blank=True, related_name="validated_model_versions"
    )
    test_datasets = models.ManyToManyField(
        DatasetVersion, blank=True, related_name="tested_model_versions"
    )
    code_repository = models.CharField(max_length=500, blank=True)
    code_commit = models.CharField(max_length=64, blank=True)
    parameters = models.JSONField(default=dict, blank=True, validators=[validate_json_object])
    environment = models.JSONField(default=dict, blank=True, validators=[validate_json_object])
    metrics = models.JSONField(
        default=dict, blank=True, validators=[validate_metrics], help_text='{"auc": 0.91, ...}'
    )
    subgroup_metrics = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_subgroup_metrics],
        help_text='{"age<30": {"recall": 0.82}, ...}',
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REGISTERED)
    registered_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="modelversion_unique")
        ]
        indexes = [
            models.Index(fields=["-created_at"]),
            models.Index(fields=["use_case", "-created_at"]),
            models.Index(fields=["status", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("modelversion-detail", args=[self.pk])

    @property
    def model_card_missing(self) -> list[str]:
        return [f for f in self.MODEL_CARD_FIELDS if not getattr(self, f).strip()]


class Evidence(models.Model):
    class Kind(models.TextChoices):
        VALIDATION_REPORT = "validation_report", "Validation report"
        BIAS_EVALUATION = "bias_evaluation", "Bias evaluation"
        SECURITY_SCAN = "security_scan", "Security scan"
        TEST_RESULTS = "test_results", "Test results"
        RED_TEAM = "red_team", "Red-team notes"
        IMPACT_ASSESSMENT = "impact_assessment", "Impact assessment"
        OTHER = "other", "Other"

    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="evidence")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="evidence"
    )
    kind = models.CharField(max_length=30, choices=Kind.choices)
    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True)
    uri = models.CharField(max_length=1000, blank=True)
    sha256 = models.CharField(max_length=64, validators=[sha256_validator])
    size_bytes = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    media_type = models.CharField(max_length=100, blank=True)
    data = models.JSONField(
        default=dict, blank=True, validators=[validate_json_object], help_text="structured results"
    )
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "evidence"
        indexes = [models.Index(fields=["use_case", "-created_at"])]

    def __str__(self) -> str:
        return self.title


class Artifact(models.Model):
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="artifacts"
    )
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=300)
    uri = models.CharField(max_length=1000)
    sha256 = models.CharField(max_length=64, validators=[sha256_validator])
    size_bytes = models.BigIntegerField(validators=[MinValueValidator(0)])
    media_type = models.CharField(max_length=100, default="application/octet-stream")
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    class Environment(models.TextChoices):
        DEVELOPMENT = "development", "Development"
        STAGING = "staging", "Staging"
        PRODUCTION = "production", "Production"

    class Strategy(models.TextChoices):
        SHADOW = "shadow", "Shadow"
        CANARY = "canary", "Canary"
        BLUE_GREEN = "blue_green", "Blue-green"
        FULL = "full", "Full"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        ROLLED_BACK = "rolled_back", "Rolled back"
        REPLACED = "replaced", "Replaced"
        RETIRED = "retired", "Retired"
        FAILED = "failed", "Failed"

    TRANSITIONS = {
        "pending": {"active", "failed"},
        "active": {"rolled_back", "replaced", "retired"},
        "rolled_back": set(),
        "replaced": {"active"},
        "retired": set(),
        "failed": set(),
    }

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="deployments"
    )
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    environment = models.CharField(max_length=20, choices=Environment.choices)
    region = models.CharField(max_length=64, blank=True)
    strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.FULL)
    traffic_share = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    endpoint = models.CharField(max_length=500, blank=True)
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    notes = models.TextField(blank=True)
    released_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    released_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-released_at"]
        indexes = [models.Index(fields=["use_case", "-released_at"])]

    def __str__(self) -> str:
        region = f"/{self.region}" if self.region else ""
        return f"{self.model_version} → {self.environment}{region}"

    def get_absolute_url(self) -> str:
        return reverse("deployment-detail", args=[self.pk])


class SigningKey(models.Model):
    """An Ed25519 public key of a person, a pipeline or the portal itself.

    ``key_id`` is Charter's id (SHA-256 hex of the raw 32-byte public key);
    ``sslib_key_id`` is the id securesystemslib computes by default for the same
    key, so envelopes signed with either id resolve to this row.
    """

    class Kind(models.TextChoices):
        PERSON = "person", "Person"
        PIPELINE = "pipeline", "Pipeline"
        PORTAL = "portal", "Portal"

    key_id = models.CharField(max_length=64, unique=True, validators=[sha256_validator])
    sslib_key_id = models.CharField(max_length=64, db_index=True, validators=[sha256_validator])
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    public_key_pem = models.TextField()
    owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="signing_keys"
    )
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.TextField(blank=True)
    revoked_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="portal") & models.Q(owner__isnull=True))
                | (~models.Q(kind="portal") & models.Q(owner__isnull=False)),
                name="signingkey_owner_matches_kind",
            )
        ]

    def __str__(self) -> str:
        who = self.owner.get_username() if self.owner_id else "portal"  # type: ignore[union-attr]
        return f"{self.kind} key {self.key_id[:16]} ({who})"

    def revoked_by_time(self, when: Any) -> bool:
        """True when the key was revoked at or before ``when``."""
        return self.revoked_at is not None and self.revoked_at <= when


class Attestation(models.Model):
    """A DSSE envelope (in-toto Statement v1) over an artifact or evidence item.

    ``verdict`` is the result of verification on receipt (``verified_at``).
    Refused envelopes are not stored (their refusal is an audit event); a key
    revoked later leaves the verdict standing, and the deployment gate
    re-verifies.
    """

    class Verdict(models.TextChoices):
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"

    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    artifact = models.ForeignKey(
        Artifact, null=True, blank=True, on_delete=models.PROTECT, related_name="attestations"
    )
    evidence = models.ForeignKey(
        Evidence, null=True, blank=True, on_delete=models.PROTECT, related_name="attestations"
    )
    envelope = models.JSONField()
    payload_sha256 = models.CharField(max_length=64, validators=[sha256_validator])
    payload_type = models.CharField(max_length=200)
    predicate_type = models.CharField(max_length=500)
    subject_sha256 = models.CharField(max_length=64, validators=[sha256_validator])
    signer_key = models.ForeignKey(
        SigningKey, null=True, blank=True, on_delete=models.PROTECT, related_name="attestations"
    )
    portal_signed = models.BooleanField(
        default=False, help_text="signed by the portal's key on behalf of created_by"
    )
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    reason = models.TextField(blank=True)
    verified_at = models.DateTimeField()
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["use_case", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(artifact__isnull=False) & models.Q(evidence__isnull=True))
                | (models.Q(artifact__isnull=True) & models.Q(evidence__isnull=False)),
                name="attestation_one_target",
            ),
            models.UniqueConstraint(
                fields=["artifact", "signer_key", "payload_sha256"],
                condition=models.Q(artifact__isnull=False),
                name="attestation_unique_artifact",
            ),
            models.UniqueConstraint(
                fields=["evidence", "signer_key", "payload_sha256"],
                condition=models.Q(evidence__isnull=False),
                name="attestation_unique_evidence",
            ),
        ]

    def __str__(self) -> str:
        if self.artifact_id:
            target = f"artifact {self.artifact_id}"
        else:
            target = f"evidence {self.evidence_id}"
        return f"attestation {self.pk} on {target} ({self.verdict})"

    @property
    def target(self) -> Artifact | Evidence:
        return self.artifact if self.artifact_id else self.evidence  # type: ignore[return-value]


class MlflowImportJob(models.Model):
    """An import from MLflow asked for in the portal and run by a worker; keeps the report.

    The tracking URI is stored without a password (the form refuses one: credentials
    belong in the worker's environment, e.g. ``MLFLOW_TRACKING_PASSWORD`` or ``~/.pgpass``).
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    tracking_uri = models.CharField(max_length=1000)
    use_case = models.ForeignKey(
        UseCase, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    dry_run = models.BooleanField(default=False)
    download_artifacts = models.BooleanField(default=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    report = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"MLflow import {self.pk} from {self.tracking_uri}"

    def get_absolute_url(self) -> str:
        return reverse("mlflow-import-job", args=[self.pk])
