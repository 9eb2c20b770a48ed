from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Upper

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    """One link of the hash chain. Rows are never updated or deleted.

    ``payload`` holds the RFC 8785 canonical JSON of the event exactly as it was
    hashed; the other columns repeat its fields so they can be filtered and
    indexed. ``hash = SHA-256(prev_hash (64 hex chars, ASCII) || payload)``.
    """

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        TRANSITION = "transition"
        GRANT = "grant"
        REVOKE = "revoke"
        TOKEN_ISSUE = "token_issue"
        TOKEN_REVOKE = "token_revoke"
        LOGIN = "login"
        LOGIN_FAILED = "login_failed"
        LOGOUT = "logout"
        LOCKOUT = "lockout"  # repeated failed logins locked a username/address out
        UNLOCK = "unlock"  # an administrator lifted a lockout early
        VIEW = "view"
        DOWNLOAD = "download"
        EXPORT = "export"
        VERIFY = "verify"
        CHECKPOINT = "checkpoint"
        ARCHIVE = "archive"
        TASK = "task"

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # covered by the (actor, seq) index
        related_name="+",
    )
    actor_repr = models.CharField(max_length=200)
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    channel = models.CharField(max_length=20, blank=True)
    payload = models.TextField()
    prev_hash = models.CharField(max_length=64)
    # Not indexed: every index is paid on each append, and nothing looks events up by
    # hash (verification walks by seq). created_at has a BRIN index on PostgreSQL
    # (migration 0008): times grow with seq, so a few pages of summary suffice.
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "seq"]),
            models.Index(fields=["actor", "seq"]),
            models.Index(fields=["action", "seq"]),
            # the trail's actor filter (case-insensitive, newest first): UPPER(actor_repr)
            # is what Django compares for iexact
            models.Index(Upper("actor_repr"), "seq", name="audits_actor_repr_upper_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id} by {self.actor_repr}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise RuntimeError("audit events are append-only")


class Checkpoint(models.Model):
    """A signed statement of the chain head: DSSE envelope over {"seq","hash","time"}."""

    seq = models.BigIntegerField(db_index=True)
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    envelope = models.JSONField()

    class Meta:
        ordering = ["seq", "id"]

    def __str__(self) -> str:
        return f"checkpoint at #{self.seq} ({self.hash[:12]}…)"


class ChainHead(models.Model):
    """One row (id=1) holding the chain's last seq and hash, on PostgreSQL.

    ``UPDATE … RETURNING`` on it takes the writers' lock and reads the head in
    one round trip; the row is re-created from the event table if it is ever
    missing (e.g. after a test database flush).
    """

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"head #{self.seq}"


class VerificationRun(models.Model):
    """One walk of the chain (by a worker), shown on the chain status page."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    length = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    checkpoints = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        state = "running" if self.finished_at is None else ("intact" if self.ok else "broken")
        return f"verification {self.pk}: {state}"


class Segment(models.Model):
    """A stretch of the chain (first_seq..last_seq) archived to a file, then removed.

    The signed manifest (a DSSE envelope by the portal key) binds the range, the
    hash before it, its last hash, the event count and the SHA-256 of the
    archived ``events.jsonl``, so the rows left in the database still verify
    from ``last_hash`` on, and the archive file verifies on its own, offline.
    Rows are deleted only when a segment covers them (PostgreSQL trigger).
    """

    first_seq = models.BigIntegerField(unique=True)
    last_seq = models.BigIntegerField(unique=True)
    prev_hash = models.CharField(max_length=64)
    last_hash = models.CharField(max_length=64)
    events = models.BigIntegerField()
    events_sha256 = models.CharField(max_length=64)
    file_name = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    envelope = models.JSONField()

    class Meta:
        ordering = ["first_seq"]

    def __str__(self) -> str:
        return f"archived segment #{self.first_seq}–#{self.last_seq}"


class ReportJob(models.Model):
    """A lineage report package being rendered by a worker (lineage/reports/)."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    subject_type = models.CharField(max_length=100)
    subject_id = models.CharField(max_length=64)
    subject_repr = models.CharField(max_length=300)
    use_case = models.ForeignKey("registry.UseCase", on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    file = models.FileField(upload_to="reports/%Y/%m/", blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"report of {self.subject_repr} ({self.state})"
