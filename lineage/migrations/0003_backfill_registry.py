"""Nodes and edges for registry records that existed before the lineage app.

From here on the registry's signals keep the graph current (lineage.registry_sync);
this backfill writes the same nodes and edges once, with the historical models.
"""

import hashlib

from django.db import migrations
from django.utils import timezone


def _digest(key):
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def forwards(apps, schema_editor):
    Node = apps.get_model("lineage", "LineageNode")
    Edge = apps.get_model("lineage", "LineageEdge")
    UseCase = apps.get_model("registry", "UseCase")
    DatasetVersion = apps.get_model("registry", "DatasetVersion")
    ModelVersion = apps.get_model("registry", "ModelVersion")
    Deployment = apps.get_model("registry", "Deployment")
    now = timezone.now()
    ids = {}

    def add(kind, obj, label, use_case_id, attrs, valid_from=None):
        key = f"{kind}:{obj.pk}"
        node = Node.objects.create(
            kind=kind,
            key=key,
            key_hash=_digest(key),
            object_id=obj.pk,
            label=label,
            use_case_id=use_case_id,
            attrs=attrs,
            valid_from=valid_from,
        )
        ids[(kind, obj.pk)] = node.pk

    for uc in UseCase.objects.all():
        add("use_case", uc, uc.name, uc.pk, {"status": uc.status, "risk_tier": uc.risk_tier})
    for dv in DatasetVersion.objects.select_related("dataset"):
        add(
            "dataset_version",
            dv,
            f"{dv.dataset.name}@{dv.version}",
            dv.use_case_id,
            {"uri": dv.uri, "sha256": dv.sha256, "sensitivity": dv.sensitivity},
        )
    for mv in ModelVersion.objects.select_related("model"):
        add(
            "model_version",
            mv,
            f"{mv.model.name}@{mv.version}",
            mv.use_case_id,
            {"status": mv.status},
        )
    for d in Deployment.objects.select_related("model_version__model"):
        live = [[d.released_at.isoformat(), None]] if d.status == "active" else []
        label = f"{d.model_version.model.name}@{d.model_version.version} → {d.environment}"
        add(
            "deployment",
            d,
            label + (f"/{d.region}" if d.region else ""),
            d.use_case_id,
            {
                "environment": d.environment,
                "region": d.region,
                "status": d.status,
                "strategy": d.strategy,
                "endpoint": d.endpoint,
                "live": live,
            },
            valid_from=d.released_at if live else None,
        )
    edges = []

    def edge(src, dst, kind):
        edges.append(
            Edge(src_id=ids[src], dst_id=ids[dst], kind=kind, source="registry", created_at=now)
        )

    for field, kind in (
        ("training_datasets", "trained_on"),
        ("validation_datasets", "validated_on"),
        ("test_datasets", "tested_on"),
    ):
        through = getattr(ModelVersion, field).through
        for mv_id, dv_id in through.objects.values_list("modelversion_id", "datasetversion_id"):
            edge(("dataset_version", dv_id), ("model_version", mv_id), kind)
    through = DatasetVersion.derived_from.through
    for child, parent in through.objects.values_list(
        "from_datasetversion_id", "to_datasetversion_id"
    ):
        edge(("dataset_version", parent), ("dataset_version", child), "derived_from")
    for mv_id, parent in ModelVersion.objects.exclude(parent=None).values_list("id", "parent_id"):
        edge(("model_version", parent), ("model_version", mv_id), "retrained_from")
    for d_id, mv_id, uc_id in Deployment.objects.values_list(
        "id", "model_version_id", "use_case_id"
    ):
        edge(("model_version", mv_id), ("deployment", d_id), "deployed_as")
        edge(("deployment", d_id), ("use_case", uc_id), "serves")
    Edge.objects.bulk_create(edges, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("lineage", "0002_events_append_only")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
