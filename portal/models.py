from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "chtr"


class ServiceAccount(models.Model):
    """A non-human user (CI job, training pipeline, serving fleet)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="service_account"
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.user.username


class ApiToken(models.Model):
    """A bearer token. Only the SHA-256 of the secret is stored; the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64)
    use_cases = models.ManyToManyField(
        "registry.UseCase",
        blank=True,
        related_name="+",
        help_text="Use cases the token may reach; empty means every use case its user may reach.",
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=300, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}_{self.prefix}…)"

    @staticmethod
    def new_secret() -> tuple[str, str, str]:
        """Return (token, prefix, key_hash) for a fresh token."""
        prefix = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        return token, prefix, ApiToken.hash_key(token)

    @staticmethod
    def hash_key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.key_hash, self.hash_key(token))

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "active"


class IdempotencyRecord(models.Model):
    """The response to an API write sent with an ``Idempotency-Key`` (portal/idempotency.py).

    ``principal`` is a SHA-256 of the caller's credentials (bearer token or session
    user), so one caller's keys never collide with another's.
    """

    principal = models.CharField(max_length=64)
    key = models.CharField(max_length=200)
    request_sha256 = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=200, blank=True)
    body = models.BinaryField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["principal", "key"], name="idempotency_key_unique")
        ]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"idempotency key {self.key[:16]}"


# ---------------------------------------------------------------- outgoing webhooks


class WebhookEvent(models.TextChoices):
    VERSION_REGISTERED = "version.registered", "A model version is registered"
    APPROVAL_REQUESTED = "approval.requested", "An approval is requested"
    APPROVAL_DECIDED = "approval.decided", "An approval is decided"
    DEPLOYMENT_RECORDED = "deployment.recorded", "A deployment is recorded"
    DRIFT_ALERT = "drift.alert", "Drift opens an incident"
    INCIDENT_OPENED = "incident.opened", "An incident is opened"
    INCIDENT_CLOSED = "incident.closed", "An incident is closed"
    RETRAINING_FINISHED = "retraining.finished", "A retraining job finishes"


PING_EVENT = "ping"


class WebhookSubscription(models.Model):
    """Where to POST which events: for one use case, or for every use case (admins).

    ``secret`` signs each delivery (HMAC-SHA256); it is shown once when the subscription
    is created and never returned by the API afterwards. Only its owner (``created_by``)
    and administrators see a subscription.
    """

    name = models.CharField(max_length=200, blank=True)
    url = models.URLField(max_length=1000, help_text="https://… endpoint that receives POSTs")
    secret = models.CharField(max_length=100, editable=False)
    events = models.JSONField(default=list, help_text="event names, e.g. ['version.registered']")
    use_case = models.ForeignKey(
        "registry.UseCase",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Only this use case's events; empty: every use case (administrators only)",
    )
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or self.url

    @staticmethod
    def new_secret() -> str:
        return f"whsec_{secrets.token_urlsafe(32)}"

    @property
    def scope_label(self) -> str:
        return str(self.use_case) if self.use_case_id else "every use case"


class WebhookDelivery(models.Model):
    """One event for one subscription; its id travels as ``X-Charter-Delivery``.

    Written in the transaction of the change it reports (so a rolled-back change leaves
    none) and sent after commit by ``portal.tasks.deliver_webhook``.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=50)
    audit_seq = models.BigIntegerField(null=True, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "audit_seq", "event"],
                condition=models.Q(audit_seq__isnull=False),
                name="webhookdelivery_once_per_event",
            )
        ]
        indexes = [
            models.Index(fields=["subscription", "-created_at"]),
            models.Index(fields=["status", "next_attempt_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.subscription_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP try of a delivery (infrastructure log, not audited)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.FloatField()
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        return f"try {self.number} of {self.delivery_id}: {self.status_code or self.error}"
