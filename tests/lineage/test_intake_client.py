"""The official openlineage-python client, over HTTP, against a live Charter server."""

from __future__ import annotations

import gc
import gzip
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    DatasetEvent,
    InputDataset,
    Job,
    JobEvent,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    datasource_dataset,
    schema_dataset,
)
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)

from audits.models import AuditEvent
from lineage.models import LineageEdge, LineageEvent, LineageNode
from lineage.services import AUDIT_ACTION
from tests.lineage.conftest import make_pipeline, run_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client_for(live_server: Any) -> Iterator[Callable[..., OpenLineageClient]]:
    """OpenLineage clients posting to the live server (closed afterwards: a kept-alive
    connection would keep a server thread, and its database session, open)."""
    made: list[OpenLineageClient] = []

    def make(secret: str, *, gzip_body: bool = False) -> OpenLineageClient:
        config = HttpConfig(
            url=live_server.url,
            auth=ApiKeyTokenProvider({"apiKey": secret}),
            compression=HttpCompression.GZIP if gzip_body else None,
            retry={"total": 0},
        )
        made.append(OpenLineageClient(transport=HttpTransport(config), config={}))
        return made[-1]

    yield make
    for client in made:
        client.close()
    # Responses still referenced keep their sockets (and so a server thread) open.
    gc.collect()
    for thread in threading.enumerate():
        if "process_request_thread" in thread.name:
            thread.join(timeout=5)


def _schema(*columns: tuple[str, str]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in columns]
    )


def _training_run(run_id: str, state: RunState) -> RunEvent:
    source = datasource_dataset.DatasourceDatasetFacet(name="warehouse", uri="postgres://wh:5432")
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            "customer_id": column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        "postgres://wh:5432",
                        "crm.public.customers",
                        "id",
                        transformations=[column_lineage_dataset.Transformation(type="DIRECT")],
                    )
                ]
            ),
            "spend_90d": column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        "postgres://wh:5432", "crm.public.orders", "amount"
                    ),
                    column_lineage_dataset.InputField(
                        "postgres://wh:5432", "crm.public.orders", "placed_at"
                    ),
                ]
            ),
        }
    )
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=run_id),
        job=Job(namespace="airflow", name="credit.features"),
        producer="https://github.com/example/airflow-dags/tree/v3",
        inputs=[
            InputDataset(
                "postgres://wh:5432",
                "crm.public.customers",
                facets={"schema": _schema(("id", "int"), ("name", "text")), "dataSource": source},
            ),
            InputDataset(
                "postgres://wh:5432",
                "crm.public.orders",
                facets={"schema": _schema(("amount", "numeric"), ("placed_at", "timestamp"))},
            ),
        ],
        outputs=[
            OutputDataset(
                "s3://features",
                "credit/customer_features",
                facets={
                    "schema": _schema(("customer_id", "int"), ("spend_90d", "numeric")),
                    "columnLineage": lineage,
                },
            )
        ],
    )


def _edges() -> set[tuple[str, str, str]]:
    return {
        (e.src.key, e.dst.key, e.kind)
        for e in LineageEdge.objects.filter(source="openlineage").select_related("src", "dst")
    }


def test_client_run_events_become_nodes_edges_and_audit_events(
    client_for: Callable[..., OpenLineageClient], world: Any
) -> None:
    pipeline = make_pipeline(world.uc_a, "airflow_credit")
    client = client_for(pipeline.secret)
    run_id = str(uuid.uuid4())
    audit_before = AuditEvent.objects.filter(action=AUDIT_ACTION).count()

    client.emit(_training_run(run_id, RunState.START))
    client.emit(_training_run(run_id, RunState.COMPLETE))

    assert LineageEvent.objects.count() == 2
    assert set(LineageEvent.objects.values_list("event_type", flat=True)) == {"START", "COMPLETE"}
    run = f"run:{run_id}"
    customers = "dataset:postgres://wh:5432:crm.public.customers"
    orders = "dataset:postgres://wh:5432:crm.public.orders"
    features = "dataset:s3://features:credit/customer_features"
    assert _edges() == {
        ("job:airflow:credit.features", run, "run_of"),
        (customers, run, "input"),
        (orders, run, "input"),
        (run, features, "output"),
        (customers, features, "column"),
        (orders, features, "column"),
    }
    nodes = {n.key: n for n in LineageNode.objects.exclude(kind__in=_REGISTRY)}
    assert set(nodes) == {"job:airflow:credit.features", run, customers, orders, features}
    assert all(n.use_case_id == world.uc_a.pk for n in nodes.values())
    assert nodes[customers].attrs["schema"] == [
        {"name": "id", "type": "int"},
        {"name": "name", "type": "text"},
    ]
    assert nodes[customers].attrs["dataSource"] == {
        "name": "warehouse",
        "uri": "postgres://wh:5432",
    }
    assert nodes[customers].linked is False
    assert nodes[run].attrs["state"] == "COMPLETE"
    assert nodes[run].valid_from is not None and nodes[run].valid_to is not None
    column = LineageEdge.objects.get(kind="column", src__key=orders)
    assert column.detail == {"fields": {"spend_90d": [{"field": "amount"}, {"field": "placed_at"}]}}
    direct = LineageEdge.objects.get(kind="column", src__key=customers).detail
    assert direct["fields"]["customer_id"][0]["transformations"][0]["type"] == "DIRECT"

    events = AuditEvent.objects.filter(action=AUDIT_ACTION).order_by("seq")
    assert events.count() == audit_before + 2
    last = events.last()
    assert last.actor_repr == "airflow_credit" and last.channel == "api"
    assert last.object_type == "lineage.lineageevent"
    assert last.changes["run_id"] == run_id and last.changes["use_case"] == world.uc_a.pk

    # The raw event is kept exactly, unknown facets included.
    stored = LineageEvent.objects.get(event_type="COMPLETE").payload
    assert stored["outputs"][0]["facets"]["columnLineage"]["fields"]["spend_90d"]
    assert stored["run"]["runId"] == run_id


_REGISTRY = ("use_case", "dataset_version", "model_version", "deployment")


def test_client_duplicate_gzip_dataset_and_job_events(
    client_for: Callable[..., OpenLineageClient], world: Any
) -> None:
    pipeline = make_pipeline(world.uc_a, "airflow_dup")
    plain = client_for(pipeline.secret)
    zipped = client_for(pipeline.secret, gzip_body=True)
    event = _training_run(str(uuid.uuid4()), RunState.COMPLETE)

    plain.emit(event)
    plain.emit(event)  # the same event again: stored once
    zipped.emit(event)  # and once more, gzipped
    assert LineageEvent.objects.count() == 1
    assert AuditEvent.objects.filter(action=AUDIT_ACTION).count() == 1

    zipped.emit(_training_run(str(uuid.uuid4()), RunState.START))
    assert LineageEvent.objects.count() == 2

    zipped.emit(
        DatasetEvent(
            eventTime=datetime.now(UTC).isoformat(),
            producer="https://example.com/catalog",
            dataset=StaticDataset(
                "s3://features",
                "credit/holdout",
                facets={"schema": _schema(("customer_id", "int"))},
            ),
        )
    )
    zipped.emit(
        JobEvent(
            eventTime=datetime.now(UTC).isoformat(),
            producer="https://example.com/catalog",
            job=Job(namespace="airflow", name="credit.score"),
            inputs=[InputDataset("s3://features", "credit/holdout")],
            outputs=[OutputDataset("s3://scores", "credit/scores")],
        )
    )
    kinds = dict(LineageEvent.objects.values_list("kind", "job_name").distinct())
    assert kinds["DatasetEvent"] == "" and kinds["JobEvent"] == "credit.score"
    holdout = LineageNode.objects.get(key="dataset:s3://features:credit/holdout")
    assert holdout.attrs["schema"] == [{"name": "customer_id", "type": "int"}]
    assert ("job:airflow:credit.score", "dataset:s3://scores:credit/scores", "output") in _edges()
    assert ("dataset:s3://features:credit/holdout", "job:airflow:credit.score", "input") in _edges()


def test_invalid_events_are_refused_with_the_field_named(
    client_for: Callable[..., OpenLineageClient], live_server: Any, world: Any
) -> None:
    pipeline = make_pipeline(world.uc_a, "airflow_bad")
    client = client_for(pipeline.secret)
    # Passes the client's own checks, but RFC 3339 requires a time zone offset.
    event = RunEvent(
        eventType=RunState.START,
        eventTime="2026-01-05T10:00:00",
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="airflow", name="credit.features"),
        producer="https://example.com/p",
    )
    with pytest.raises(requests.HTTPError) as caught:
        client.emit(event)
    response = caught.value.response
    assert response.status_code == 400
    body = response.json()
    assert "eventTime" in body["errors"] and "time zone" in body["errors"]["eventTime"][0]

    headers = {"Authorization": f"Bearer {pipeline.secret}", "Content-Type": "application/json"}
    bad = run_event(run_id="not-a-uuid")
    bad["eventType"] = "FINISHED"
    response = requests.post(
        f"{live_server.url}/api/v1/lineage", data=json.dumps(bad), headers=headers, timeout=10
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "must be a UUID" in errors["run.runId"][0]
    assert "START" in errors["eventType"][0]
    assert LineageEvent.objects.count() == 0

    # A gzipped batch over plain HTTP: stored all at once, or not at all.
    batch = [run_event(), run_event()]
    response = requests.post(
        f"{live_server.url}/api/v1/lineage/batch",
        data=gzip.compress(json.dumps(batch).encode()),
        headers={**headers, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert response.json()["stored"] == 2
    batch.append({**run_event(), "producer": "not a uri"})
    response = requests.post(
        f"{live_server.url}/api/v1/lineage/batch", json=batch, headers=headers, timeout=10
    )
    assert response.status_code == 400
    assert "absolute URI" in response.json()["errors"]["[2].producer"][0]
    assert LineageEvent.objects.count() == 2

    # No token, no intake.
    response = requests.post(f"{live_server.url}/api/v1/lineage", json=run_event(), timeout=10)
    assert response.status_code == 401
