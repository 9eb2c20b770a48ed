"""The lineage record: raw OpenLineage events (append-only) and the materialised graph.

Edges point the way data flows: ``src`` is upstream of ``dst``. So an input
dataset points at the run that read it, a run at the dataset it wrote, a
dataset version at the model version trained on it, a model version at its
deployment and a deployment at the use case it serves. Upstream queries walk
edges backwards, impact (downstream) queries forwards.

Every node carries the use case that owns it (nullable): visibility follows
``portal.permissions.Access`` like every registry object. A node without a use
case is visible only to those who see every use case.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q


class LineageEvent(models.Model):
    """One OpenLineage event exactly as received (its JSON), never changed or deleted.

    ``sha256`` is the SHA-256 of the event's canonical JSON (keys sorted, compact): the same
    event posted twice is stored once. The other columns repeat fields of
    ``payload`` for filtering.
    """

    class Kind(models.TextChoices):
        RUN = "RunEvent", "Run event"
        DATASET = "DatasetEvent", "Dataset event"
        JOB = "JobEvent", "Job event"

    sha256 = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    event_type = models.CharField(max_length=20, blank=True, help_text="RunEvent eventType")
    event_time = models.DateTimeField()
    run_id = models.UUIDField(null=True, blank=True)
    job_namespace = models.TextField(blank=True)
    job_name = models.TextField(blank=True)
    producer = models.TextField()
    schema_url = models.TextField()
    payload = models.JSONField()
    use_case = models.ForeignKey(
        "registry.UseCase", on_delete=models.PROTECT, related_name="lineage_events"
    )
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    token_id = models.BigIntegerField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["use_case", "-event_time"]),
            models.Index(fields=["run_id"]),
            models.Index(fields=["job_namespace", "job_name"]),
        ]

    def __str__(self) -> str:
        what = self.event_type or self.kind
        if self.job_name:
            return f"{what} {self.job_namespace}:{self.job_name}"
        return what

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("lineage events are append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise RuntimeError("lineage events are append-only")


class NodeKind(models.TextChoices):
    DATASET = "dataset", "Dataset (OpenLineage)"
    JOB = "job", "Job"
    RUN = "run", "Run"
    DATASET_VERSION = "dataset_version", "Dataset version"
    MODEL_VERSION = "model_version", "Model version"
    DEPLOYMENT = "deployment", "Deployment"
    USE_CASE = "use_case", "Use case"


REGISTRY_KINDS = frozenset(
    {NodeKind.DATASET_VERSION, NodeKind.MODEL_VERSION, NodeKind.DEPLOYMENT, NodeKind.USE_CASE}
)


class EdgeKind(models.TextChoices):
    INPUT = "input", "Input of"
    OUTPUT = "output", "Output of"
    RUN_OF = "run_of", "Run of job"
    PARENT = "parent", "Parent run of"
    COLUMN = "column", "Column lineage"
    VERSION = "version", "Version of (dataset linked to the registry)"
    TRAINED_ON = "trained_on", "Trained on"
    VALIDATED_ON = "validated_on", "Validated on"
    TESTED_ON = "tested_on", "Tested on"
    DEPLOYED_AS = "deployed_as", "Deployed as"
    SERVES = "serves", "Serves"
    RETRAINED_FROM = "retrained_from", "Retrained from"
    DERIVED_FROM = "derived_from", "Derived from"


# Edges that carry data: upstream and impact queries follow these. ``parent``
# (run hierarchy) and ``column`` (detail parallel to input/output) are shown in
# the neighbourhood graph but do not widen provenance or impact.
FLOW_KINDS = tuple(k.value for k in EdgeKind if k not in (EdgeKind.PARENT, EdgeKind.COLUMN))


def node_key(kind: str, *, namespace: str = "", name: str = "", ref: object = None) -> str:
    """The public id of a node: ``dataset:<ns>:<name>``, ``job:<ns>:<name>``,
    ``run:<uuid>``, or ``<kind>:<registry id>`` for registry objects."""
    if kind in (NodeKind.DATASET, NodeKind.JOB):
        return f"{kind}:{namespace}:{name}"
    return f"{kind}:{ref}"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class LineageNode(models.Model):
    kind = models.CharField(max_length=20, choices=NodeKind.choices)
    key = models.TextField(help_text="public id, e.g. dataset:<namespace>:<name>")
    key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of key")
    namespace = models.TextField(blank=True)
    name = models.TextField(blank=True)
    object_id = models.BigIntegerField(null=True, blank=True, help_text="registry object id")
    label = models.TextField(blank=True)
    use_case = models.ForeignKey(
        "registry.UseCase",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="lineage_nodes",
    )
    linked = models.BooleanField(
        null=True,
        blank=True,
        help_text="OpenLineage datasets: linked to a registry dataset version (None: n/a)",
    )
    attrs = models.JSONField(default=dict, blank=True)
    valid_from = models.DateTimeField(
        null=True, blank=True, help_text="runs: started; deployments: live from"
    )
    valid_to = models.DateTimeField(
        null=True, blank=True, help_text="runs: ended; deployments: live until"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "key"]
        indexes = [
            models.Index(fields=["kind", "object_id"]),
            models.Index(fields=["kind", "valid_from"]),
        ]

    def __str__(self) -> str:
        return self.key


class LineageEdge(models.Model):
    """A directed edge, upstream → downstream. Removed registry links keep their row
    (``removed_at``), so the graph can be read as it was at any time."""

    class Source(models.TextChoices):
        OPENLINEAGE = "openlineage", "OpenLineage event"
        REGISTRY = "registry", "Registry"

    src = models.ForeignKey(
        LineageNode, on_delete=models.CASCADE, related_name="out_edges", db_index=False
    )
    dst = models.ForeignKey(
        LineageNode, on_delete=models.CASCADE, related_name="in_edges", db_index=False
    )
    kind = models.CharField(max_length=20, choices=EdgeKind.choices)
    detail = models.JSONField(default=dict, blank=True, help_text="column lineage detail")
    source = models.CharField(max_length=20, choices=Source.choices)
    event = models.ForeignKey(
        LineageEvent,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the event that first stated this edge",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["src", "dst", "kind"],
                condition=Q(removed_at__isnull=True),
                name="lineageedge_unique_live",
            )
        ]
        indexes = [
            models.Index(
                fields=["dst", "src", "kind"],
                condition=Q(removed_at__isnull=True),
                name="lineageedge_dst_live",
            ),
            # All edges, removed ones included: time-travel reads and cascades.
            models.Index(fields=["src", "created_at"], name="lineageedge_src_time"),
            models.Index(fields=["dst", "created_at"], name="lineageedge_dst_time"),
        ]

    def __str__(self) -> str:
        return f"{self.src_id} -{self.kind}-> {self.dst_id}"


class GraphChange(models.Model):
    """One row per committed transaction that changed edges, in commit order (PostgreSQL).

    Written at commit by a deferred trigger on ``lineage_lineageedge`` (migration 0005)
    under a transaction-scoped advisory lock, so ``seq`` grows in commit order. ``tx`` is
    the writing transaction's id, also stamped on each edge it inserted (column ``tx``);
    ``full`` marks removals and deletions. Processes holding the graph in memory
    (:mod:`lineage.cache`) read the rows after the last ``seq`` they applied.
    """

    seq = models.BigAutoField(primary_key=True)
    tx = models.BigIntegerField()
    full = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"change {self.seq} (tx {self.tx}{', full' if self.full else ''})"
