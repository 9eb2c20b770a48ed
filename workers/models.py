"""Telemetry, drift and incidents (the Django side of ``workers/``; the maths is in ``drift/``).

Storage grows with windows × features, not with traffic: a posted batch is a
:class:`TelemetryBatch` row only until a worker folds it into its deployment's
:class:`WindowProfile` (its payload is dropped in the same transaction, and the row itself,
kept for idempotent replays, is pruned after ``CHARTER_TELEMETRY_BATCH_RETENTION_DAYS``).
Predictions posted with an id wait in :class:`PredictionRecord` for their label until it
arrives or ``CHARTER_TELEMETRY_LABEL_HORIZON_DAYS`` pass.

Every row carries the denormalised ``use_case`` of its deployment, so the permission core's one
``use_case_id IN (…)`` filter decides visibility here as everywhere else.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse

from registry.models import DatasetVersion, Deployment, UseCase

User = settings.AUTH_USER_MODEL


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class ReferenceProfile(models.Model):
    """The drift baseline of a dataset version: a ``workers.drift`` profile as JSON.

    ``features`` lists the inputs a deployment's telemetry must carry (name and kind);
    ``prediction_column`` and ``label_column``, when set, name profile columns that are the
    model's output and the ground truth rather than inputs.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    class Source(models.TextChoices):
        FILE = "file", "Computed from the uploaded file"
        POSTED = "posted", "Posted, computed by the client"

    dataset_version = models.OneToOneField(
        DatasetVersion, on_delete=models.CASCADE, related_name="reference_profile"
    )
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=20, choices=Source.choices)
    profile = models.JSONField(null=True, blank=True)
    features = models.JSONField(default=list, blank=True)
    prediction_column = models.CharField(max_length=200, blank=True)
    label_column = models.CharField(max_length=200, blank=True)
    rows = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, help_text="of the canonical profile JSON")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"reference profile of {self.dataset_version}"

    def get_absolute_url(self) -> str:
        return self.dataset_version.get_absolute_url()

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.features]


class MonitoringConfig(models.Model):
    """Per-deployment monitoring settings: window length and drift method/threshold overrides.

    ``drift_config`` holds :class:`workers.drift.DriftConfig` keys (``method``, ``threshold``,
    ``num_method``, ``cat_method``, ``num_threshold``, ``cat_threshold``,
    ``per_feature_method``, ``per_feature_threshold``, ``drift_share``).
    ``prediction_baseline`` is a profile of the first predictions seen, used as the prediction
    drift reference when the reference profile has no prediction column.
    """

    deployment = models.OneToOneField(
        Deployment, on_delete=models.CASCADE, related_name="monitoring"
    )
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    window_seconds = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(60)], help_text="length of a window"
    )
    drift_config = models.JSONField(default=dict, blank=True)
    classification_threshold = models.FloatField(
        default=0.5, help_text="a score at or above it predicts the positive class"
    )
    prediction_baseline = models.JSONField(null=True, blank=True)
    updated_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"monitoring of deployment {self.deployment_id}"


class TelemetryBatch(models.Model):
    """One accepted POST: raw rows, a client-computed profile or labels, until folded."""

    class Kind(models.TextChoices):
        ROWS = "rows", "Rows (columnar JSON)"
        FILE = "file", "Rows (CSV / Parquet upload)"
        PROFILE = "profile", "Window profile computed by the client"
        LABELS = "labels", "Labels joined by prediction id"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    idempotency_key = models.CharField(max_length=200)
    body_sha256 = models.CharField(max_length=64)
    response = models.JSONField(default=dict)
    rows = models.BigIntegerField(default=0)
    timestamp = models.DateTimeField()
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(null=True, blank=True)
    file = models.FileField(upload_to="telemetry/%Y/%m/%d/", blank=True)
    folded_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    submitted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "idempotency_key"], name="telemetrybatch_unique_key"
            )
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=models.Q(folded_at__isnull=True),
                name="telemetrybatch_unfolded",
            ),
            models.Index(fields=["use_case", "-received_at"]),
        ]
        verbose_name_plural = "telemetry batches"

    def __str__(self) -> str:
        return f"{self.kind} batch {self.idempotency_key} of deployment {self.deployment_id}"


class WindowProfile(models.Model):
    """Everything known about one deployment's traffic in ``[start, end)``.

    ``profile`` is a ``workers.drift`` DatasetProfile of the inputs on the reference's bins,
    ``predictions`` a FeatureProfile of the outputs, ``service`` a ServiceMetrics (latency
    sketch, requests, errors), ``performance`` the label counts (see ``workers/performance.py``).
    ``version`` counts folds; ``dirty`` says the stored drift result is behind it.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    rows = models.BigIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    profile = models.JSONField(null=True, blank=True)
    predictions = models.JSONField(null=True, blank=True)
    service = models.JSONField(null=True, blank=True)
    performance = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=0)
    dirty = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "start"], name="window_unique_start")
        ]
        indexes = [
            models.Index(fields=["deployment", "-start"]),
            models.Index(fields=["end"], condition=models.Q(dirty=True), name="window_dirty"),
        ]

    def __str__(self) -> str:
        return f"window {self.start:%Y-%m-%d %H:%M} of deployment {self.deployment_id}"


class PredictionRecord(models.Model):
    """A prediction waiting for its label (joined by ``prediction_id``)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    window = models.ForeignKey(WindowProfile, on_delete=models.CASCADE, related_name="+")
    prediction_id = models.CharField(max_length=200)
    value = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "prediction_id"], name="prediction_unique_id"
            )
        ]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"prediction {self.prediction_id} of deployment {self.deployment_id}"


class DriftResult(models.Model):
    """The evaluation of one window against the reference (recomputed when the window grows)."""

    window = models.OneToOneField(WindowProfile, on_delete=models.CASCADE, related_name="result")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    rows = models.BigIntegerField(default=0)
    dataset_drift = models.BooleanField(default=False)
    share_drifted = models.FloatField(default=0.0)
    n_drifted = models.PositiveIntegerField(default=0)
    features = models.JSONField(default=list, blank=True)
    prediction = models.JSONField(null=True, blank=True)
    quality = models.JSONField(default=dict, blank=True)
    service = models.JSONField(default=dict, blank=True)
    performance = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-window_start"]
        indexes = [models.Index(fields=["deployment", "-window_start"])]

    def __str__(self) -> str:
        return f"drift of {self.window}"

    @property
    def drifted_features(self) -> list[str]:
        return [f["feature"] for f in self.features if f.get("drifted")]


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        DRIFT = "drift", "Drift verdict (dataset, or one feature)"
        METRIC_FLOOR = "metric_floor", "Label metric below a floor"
        LATENCY_P95 = "latency_p95", "Latency p95 over budget (ms)"
        ERROR_RATE = "error_rate", "Error rate over budget"
        PREDICTION_DRIFT = "prediction_drift", "Prediction drift"

    class Action(models.TextChoices):
        NONE = "none", "Open an incident only"
        RETRAIN = "retrain", "Also request a retraining job"
        ROLLBACK_REVIEW = "rollback_review", "Also flag the deployment for rollback review"

    METRICS = ("accuracy", "auc")

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    feature = models.CharField(
        max_length=200, blank=True, help_text="drift: one feature (blank: the dataset verdict)"
    )
    metric = models.CharField(max_length=30, blank=True, help_text="metric_floor: accuracy, auc")
    threshold = models.FloatField(null=True, blank=True, help_text="floor or budget")
    min_rows = models.PositiveIntegerField(
        default=1, help_text="windows (or labelled rows) smaller than this are not judged"
    )
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.NONE)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["deployment_id", "name"]

    def __str__(self) -> str:
        return self.name


class Incident(models.Model):
    """Something wrong in production, from an alert rule or a person.

    Open while ``closed_at`` is null (``approvals.facts.open_incidents`` relies on this, on
    ``severity`` and on ``title``). One open incident per rule: a rule that fires again updates
    it (``occurrences``, ``last_seen_at``) instead of opening another.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        CLOSED = "closed", "Closed"

    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    details = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    opened_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.TextField(blank=True)
    retraining_requested = models.BooleanField(default=False)
    rollback_review = models.BooleanField(default=False)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"],
                condition=models.Q(closed_at__isnull=True, rule__isnull=False),
                name="incident_one_open_per_rule",
            )
        ]
        indexes = [
            models.Index(fields=["use_case", "closed_at"]),
            models.Index(fields=["deployment", "-opened_at"]),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("incident-detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class IncidentEvent(models.Model):
    """One line of an incident's timeline (the audit chain holds the same facts, signed)."""

    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        RECURRED = "recurred", "Fired again"
        NOTIFIED = "notified", "Owners notified"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        COMMENT = "comment", "Comment"
        RETRAINING = "retraining_requested", "Retraining requested"
        RETRAINING_JOB = "retraining_job", "Retraining job"
        ROLLBACK = "rollback_review", "Flagged for rollback review"
        CLOSED = "closed", "Closed"
        REOPENED = "reopened", "Reopened"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    text = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M}"


# ---------------------------------------------------------------- retraining


class RetrainingTemplate(models.Model):
    """How a model is retrained when an alert (or a schedule, or a person without a spec of
    their own) asks for it: the job spec and the executor. One per model."""

    model = models.OneToOneField(
        "registry.Model", on_delete=models.CASCADE, related_name="retraining_template"
    )
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    spec = models.JSONField(help_text="see workers.retraining.validate_spec")
    executor = models.CharField(max_length=100, blank=True, help_text="blank: the default")
    approval_environment = models.CharField(
        max_length=20,
        default="production",
        help_text="the environment the produced version is put up for approval to",
    )
    enabled = models.BooleanField(default=True)
    updated_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id"]

    def __str__(self) -> str:
        return f"retraining template of {self.model}"


class RetrainingJob(models.Model):
    """One retraining run: what was asked, where it runs, what became of it.

    ``state`` extends the executors' vocabulary (queued, running, succeeded, failed,
    cancelled, lost) with the two states before submission: ``awaiting_approval`` (a high-risk
    use case's retraining policy wants a decision first) and ``pending`` (to be submitted).
    Every change of ``state`` is audited (workers/retraining.py); progress and the log tail
    are measurements, not governance facts, and are not.
    """

    class Trigger(models.TextChoices):
        INCIDENT = "incident", "Incident"
        SCHEDULE = "schedule", "Schedule"
        PERSON = "person", "Person"

    class State(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        PENDING = "pending", "Pending submission"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        LOST = "lost", "Lost"

    TRANSITIONS = {
        "awaiting_approval": {"pending", "cancelled"},
        "pending": {"queued", "running", "succeeded", "failed", "cancelled", "lost"},
        "queued": {"running", "succeeded", "failed", "cancelled", "lost"},
        "running": {"succeeded", "failed", "cancelled", "lost"},
        "succeeded": set(),
        "failed": set(),
        "cancelled": set(),
        "lost": set(),
    }
    ACTIVE = ("pending", "queued", "running")
    FINAL = ("succeeded", "failed", "cancelled", "lost")

    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    model = models.ForeignKey(
        "registry.Model", on_delete=models.PROTECT, related_name="retraining_jobs"
    )
    base_version = models.ForeignKey(
        "registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retraining_jobs",
        help_text="the version being retrained (the parent of the one produced)",
    )
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="retraining_jobs"
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    reason = models.TextField(blank=True)
    spec = models.JSONField()
    dataset_versions = models.ManyToManyField(DatasetVersion, blank=True, related_name="+")
    executor = models.CharField(max_length=100)
    approval_environment = models.CharField(max_length=20, default="production")
    key = models.CharField(max_length=100, unique=True, help_text="the submission's name")
    external_id = models.CharField(max_length=300, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    message = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=500, blank=True)
    log_tail = models.TextField(blank=True)
    approval = models.ForeignKey(
        "approvals.ApprovalRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the request to run this job (high-risk use cases)",
    )
    release_approval = models.ForeignKey(
        "approvals.ApprovalRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the request opened for the version it produced",
    )
    produced_version = models.ForeignKey(
        "registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="produced_by_jobs",
    )
    result = models.JSONField(default=dict, blank=True)
    account = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the job's own service account (it posts results as this user)",
    )
    token = models.ForeignKey(
        "portal.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    poll_seq = models.PositiveIntegerField(default=0)
    poll_interval_s = models.FloatField(default=0.0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["use_case", "-created_at"]),
            models.Index(
                fields=["next_poll_at"],
                condition=models.Q(state__in=["pending", "queued", "running"]),
                name="retrainingjob_active_poll",
            ),
        ]

    def __str__(self) -> str:
        return f"retraining job #{self.pk} of {self.model.name}"

    def get_absolute_url(self) -> str:
        return reverse("retraining-job", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL

    @property
    def percent(self) -> int:
        return round(max(0.0, min(1.0, self.progress)) * 100)

    @property
    def resources(self) -> dict:
        return (self.spec or {}).get("resources", {})
