"""Demo lineage: the ETL runs that built each training snapshot, as OpenLineage events
ingested through the same service as the API (so they are validated and audited)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from lineage import services
from portal.permissions import Access
from registry.models import DatasetVersion, UseCase

PRODUCER = "https://github.com/example/etl/v1"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def _events(uc: UseCase, dv: DatasetVersion, when: object) -> list[dict[str, object]]:
    slug = uc.name.lower().replace(" ", "-")
    run = str(uuid.uuid5(uuid.NAMESPACE_URL, f"charter-demo/{dv.pk}"))
    job = {"namespace": "airflow://etl", "name": f"{slug}.build_training_set"}
    inputs = [
        {"namespace": "postgres://warehouse:5432", "name": f"raw.{slug.replace('-', '_')}_events"},
        {"namespace": "postgres://warehouse:5432", "name": "raw.customers"},
    ]
    namespace, _, name = dv.uri.partition("://")
    bucket, _, key = name.partition("/")
    output = {
        "namespace": f"{namespace}://{bucket}",
        "name": key,
        "facets": {
            "schema": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
                "fields": [
                    {"name": "customer_id", "type": "string"},
                    {"name": "label", "type": "int"},
                ],
            }
        },
    }
    charter = {
        "charter": {
            "_producer": PRODUCER,
            "_schemaURL": "https://charter.example/facets/charter.json",
            "useCase": uc.pk,
        }
    }
    common = {"producer": PRODUCER, "schemaURL": SCHEMA, "job": {**job, "facets": charter}}
    return [
        {
            **common,
            "eventType": "START",
            "eventTime": (when - timedelta(minutes=40)).isoformat(),
            "run": {"runId": run},
            "inputs": inputs,
            "outputs": [],
        },
        {
            **common,
            "eventType": "COMPLETE",
            "eventTime": when.isoformat(),
            "run": {"runId": run},
            "inputs": inputs,
            "outputs": [output],
        },
    ]


def seed_lineage() -> int:
    """ETL runs for every dataset version of the demo that has a storage URI."""
    events = []
    now = timezone.now()
    for dv in DatasetVersion.objects.select_related("use_case").exclude(uri="").order_by("pk"):
        events += _events(dv.use_case, dv, now - timedelta(days=dv.pk))
    if events:
        services.ingest(Access.system(), events, is_batch=True)
    return len(events)
