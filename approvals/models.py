"""Approval workflows: versioned policies, requests, decisions, periodic reviews.

A policy is chosen by (risk tier, environment); editing one creates its next
version, and every request records the exact version it was judged by.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from registry.models import ModelVersion, RiskTier, UseCase

User = settings.AUTH_USER_MODEL


class ApprovalPolicy(models.Model):
    """One version of the policy for a (risk tier, environment).

    ``quorum`` maps role names to how many approvals each needs, e.g.
    ``{"governance board": 2, "risk officer": 1}``. ``checks`` is a list of
    ``{"name", "expression", "description"}``; expressions are CEL over the
    request's facts (see approvals/policy.py). ``required_evidence`` lists
    evidence kinds that must be attached to the model version.
    """

    INTAKE = "intake"  # the environment name used for use-case intake policies
    RETRAINING = "retraining"  # ... and for running a retraining job (workers/retraining.py)

    risk_tier = models.CharField(max_length=20, choices=RiskTier.choices)
    environment = models.CharField(max_length=20)
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    quorum = models.JSONField()
    required_evidence = models.JSONField(default=list, blank=True)
    checks = models.JSONField(default=list, blank=True)
    validity_days = models.PositiveIntegerField(default=180)
    separation_of_duties = models.BooleanField(default=True)
    rollback_without_approval = models.BooleanField(
        default=True,
        help_text="a rollback to a version approved for this environment before needs no new "
        "approval",
    )
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["risk_tier", "environment", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["risk_tier", "environment", "version"], name="policy_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("approvals:policy", args=[self.pk])


class ApprovalRequest(models.Model):
    class Kind(models.TextChoices):
        RELEASE = "release", "Release of a model version"
        INTAKE = "intake", "Use-case intake"
        RETRAINING = "retraining", "Retraining job"

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        EXPIRED = "expired", "Expired"
        SUPERSEDED = "superseded", "Superseded"
        WITHDRAWN = "withdrawn", "Withdrawn"

    TRANSITIONS = {
        "draft": {"submitted", "withdrawn"},
        "submitted": {"in_review", "approved", "rejected", "changes_requested", "withdrawn"},
        "in_review": {"approved", "rejected", "changes_requested", "withdrawn"},
        "changes_requested": {"submitted", "withdrawn"},
        "approved": {"expired", "superseded"},
        "rejected": set(),
        "expired": set(),
        "superseded": set(),
        "withdrawn": set(),
    }
    OPEN_STATES = ("submitted", "in_review")

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.RELEASE)
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="approval_requests",
    )
    environment = models.CharField(max_length=20)
    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.PROTECT, related_name="requests")
    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT)
    summary = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The last evaluation of the policy's checks: [{"name","expression","passed","value"}]
    check_results = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # SHA-256 of what was approved (card, metrics, datasets, artifacts, evidence):
    # a change afterwards voids the approval.
    fingerprint = models.CharField(max_length=64, blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    attestation = models.JSONField(null=True, blank=True)  # the signed approval (DSSE)
    closed_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "-created_at"]),
            models.Index(fields=["model_version", "environment", "state"]),
        ]

    def __str__(self) -> str:
        if self.model_version_id:
            return f"approval of {self.model_version} for {self.environment}"
        if self.kind == self.Kind.RETRAINING:
            return f"retraining approval for {self.use_case}"
        return f"intake approval of {self.use_case}"

    def get_absolute_url(self) -> str:
        return reverse("approvals:review", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES


class Decision(models.Model):
    class Verdict(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"
        REQUEST_CHANGES = "request_changes", "Request changes"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=50)
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    comment = models.TextField()
    round = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "reviewer", "round"], name="one_decision_per_reviewer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.reviewer} on request {self.request_id}"


class PeriodicReview(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Open"
        SIGNED_OFF = "signed_off", "Signed off"

    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="reviews")
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    due_date = models.DateField()
    opened_at = models.DateTimeField(auto_now_add=True)
    previous_status = models.CharField(max_length=20)
    signed_off_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    signed_off_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["due_date"]
        constraints = [
            models.UniqueConstraint(
                fields=["use_case"],
                condition=models.Q(state="open"),
                name="one_open_review_per_use_case",
            )
        ]

    def __str__(self) -> str:
        return f"review of {self.use_case} due {self.due_date}"


class Notification(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    use_case = models.ForeignKey(
        UseCase, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    text = models.CharField(max_length=500)
    url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "read_at", "-created_at"])]

    def __str__(self) -> str:
        return self.text
