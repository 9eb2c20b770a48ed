"""Intake refuses bad events with the field named, writes nothing then, and decides the use case."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from audits.models import AuditEvent
from lineage.models import LineageEdge, LineageEvent, LineageNode
from lineage.services import AUDIT_ACTION
from portal.permissions import Access
from portal.services import issue_token
from tests.lineage.conftest import (
    PRODUCER,
    SPEC,
    Pipeline,
    charter,
    dataset,
    facet,
    now,
    post,
    run_event,
)


def _counts() -> tuple[int, int, int, int]:
    return (
        LineageEvent.objects.count(),
        LineageNode.objects.count(),
        LineageEdge.objects.count(),
        AuditEvent.objects.count(),
    )


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return change


_DELETE = object()
JOB = {"namespace": "a", "name": "b"}
CUSTOMER_ID = {"namespace": "postgres://db", "name": "public.customers", "field": "id"}

BAD = [
    ("eventTime", _set("eventTime", _DELETE), "is required"),
    ("eventTime", _set("eventTime", "yesterday"), "RFC 3339"),
    ("eventTime", _set("eventTime", "2026-13-40T10:00:00Z"), "RFC 3339"),
    ("eventTime", _set("eventTime", 1700000000), "must be a string"),
    ("producer", _set("producer", _DELETE), "is required"),
    ("producer", _set("producer", "my laptop"), "absolute URI"),
    ("schemaURL", _set("schemaURL", _DELETE), "is required"),
    ("schemaURL", _set("schemaURL", "OpenLineage.json"), "absolute URI"),
    ("eventType", _set("eventType", "DONE"), "must be one of START, RUNNING, COMPLETE"),
    ("eventType", _set("eventType", 3), "must be one of"),
    ("run", _set("run", _DELETE), "is required"),
    ("run", _set("run", "abc"), "must be a JSON object"),
    ("run.runId", _set("run.runId", _DELETE), "is required"),
    ("run.runId", _set("run.runId", "run-42"), "must be a UUID"),
    ("job", _set("job", _DELETE), "is required"),
    ("job.name", _set("job.name", _DELETE), "is required"),
    ("job.namespace", _set("job.namespace", ""), "must not be empty"),
    ("job.facets", _set("job.facets", []), "must be a JSON object"),
    ("inputs", _set("inputs", {"namespace": "x"}), "must be an array"),
    ("inputs[0].name", _set("inputs.0.name", _DELETE), "is required"),
    ("outputs[0].namespace", _set("outputs.0.namespace", 7), "must be a string"),
    (
        "inputs[0].facets.schema._producer",
        _set("inputs.0.facets.schema._producer", _DELETE),
        "is required",
    ),
    (
        "inputs[0].facets.schema.fields[0].name",
        _set("inputs.0.facets.schema.fields", [{"type": "int"}]),
        "is required",
    ),
    (
        "outputs[0].facets.columnLineage.fields.id.inputFields[0].field",
        _set("outputs.0.facets.columnLineage.fields.id.inputFields", [{"namespace": "a", "name": "b"}]),  # noqa: E501
        "is required",
    ),
    (
        "run.facets.parent.run.runId",
        _set("run.facets.parent", facet("ParentRunFacet", run={"runId": "x"}, job=JOB)),
        "must be a UUID",
    ),
    (
        "run.facets.charter.useCase",
        _set("run.facets.charter", charter(useCase=["a"])),
        "use case id or name",
    ),
]  # fmt: skip


def _good() -> dict[str, Any]:
    return run_event(
        inputs=[
            dataset(
                "postgres://db",
                "public.customers",
                schema=facet("SchemaDatasetFacet", fields=[{"name": "id", "type": "int"}]),
            )
        ],
        outputs=[
            dataset(
                "s3://lake",
                "customers",
                columnLineage=facet(
                    "ColumnLineageDatasetFacet",
                    fields={
                        "id": {
                            "inputFields": [CUSTOMER_ID]
                        }
                    },
                ),
            )
        ],
    )  # fmt: skip


@pytest.mark.parametrize(("field", "change", "message"), BAD, ids=[f"{b[0]}:{b[2]}" for b in BAD])
def test_bad_event_is_refused_naming_the_field(
    world: Any, pipeline_a: Pipeline, field: str, change: Any, message: str
) -> None:
    event = _good()
    change(event)
    before = _counts()
    response = post(pipeline_a.client(), event)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["detail"] and field in body["errors"], body
    assert any(message in m for m in body["errors"][field]), body["errors"][field]
    assert _counts() == before


def test_the_good_event_itself_is_accepted(world: Any, pipeline_a: Pipeline) -> None:
    response = post(pipeline_a.client(), _good())
    assert response.status_code == 201, response.json()
    assert response.json()["stored"] is True


def test_every_event_type_and_kind_is_accepted_and_unknown_facets_kept(
    world: Any, pipeline_a: Pipeline
) -> None:
    client = pipeline_a.client()
    run_id = "3f1e2d4c-0000-4000-8000-000000000001"
    for state in ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"):
        event = run_event(state, run_id=run_id)
        event["run"]["facets"]["acme_costs"] = facet("AcmeCosts", dollars=12.5, tags=["x"])
        assert post(client, event).status_code == 201
    no_type = run_event(run_id=run_id)
    del no_type["eventType"]
    assert post(client, no_type).status_code == 201
    dataset_event = {
        "eventTime": now(),
        "producer": PRODUCER,
        "schemaURL": SPEC + "DatasetEvent",
        "dataset": dataset("s3://lake", "customers", acme=facet("Acme", owner="team-a")),
    }
    assert post(client, dataset_event).status_code == 201
    job_event = {
        "eventTime": now(),
        "producer": PRODUCER,
        "schemaURL": SPEC + "JobEvent",
        "job": {"namespace": "etl", "name": "daily"},
        "inputs": [dataset("s3://lake", "customers")],
        "outputs": [],
    }
    assert post(client, job_event).status_code == 201
    stored = LineageEvent.objects.filter(run_id=run_id, event_type="OTHER").get()
    assert stored.payload["run"]["facets"]["acme_costs"]["dollars"] == 12.5
    kinds = sorted(set(LineageEvent.objects.values_list("kind", flat=True)))
    assert kinds == ["DatasetEvent", "JobEvent", "RunEvent"]
    # A schemaURL naming one event type is held to that type's shape.
    mislabelled = {**dataset_event, "schemaURL": SPEC + "RunEvent"}
    response = post(client, mislabelled)
    assert response.status_code == 400 and "run" in response.json()["errors"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"eventTime": NaN}', {}, 400, "not valid JSON"),
        (b"", {}, 400, "empty"),
        (b'{"a": "\\u0000"}', {}, 400, "NUL"),
        (b"\xff\xfe", {}, 400, "UTF-8"),
        (b"not gzip", {"HTTP_CONTENT_ENCODING": "gzip"}, 400, "gzip"),
        (gzip.compress(b'{"a": 1}')[:-6], {"HTTP_CONTENT_ENCODING": "gzip"}, 400, "truncated"),
        (b"{}", {"HTTP_CONTENT_ENCODING": "br"}, 415, "Content-Encoding"),
        (b"[]", {}, 400, "batch"),
        (b'"text"', {}, 400, "JSON object"),
    ],
)
def test_bad_bodies(
    world: Any, pipeline_a: Pipeline, body: bytes, headers: dict, status: int, needle: str
) -> None:
    before = _counts()
    response = pipeline_a.client().generic(
        "POST", "/api/v1/lineage", body, content_type="application/json", **headers
    )
    assert response.status_code == status, response.content
    data = response.json()
    text = json.dumps(data)
    assert needle in text and "errors" in data, data
    assert _counts() == before


def test_wrong_content_type_is_415(world: Any, pipeline_a: Pipeline) -> None:
    response = pipeline_a.client().generic(
        "POST", "/api/v1/lineage", json.dumps(_good()), content_type="text/plain"
    )
    assert response.status_code == 415


def test_gzip_bomb_is_refused(world: Any, pipeline_a: Pipeline, settings: Any) -> None:
    settings.CHARTER_MAX_BODY_BYTES = 50_000
    bomb = gzip.compress(b'{"x": "' + b"a" * 200_000 + b'"}')
    assert len(bomb) < 50_000
    response = pipeline_a.client().generic(
        "POST", "/api/v1/lineage", bomb, content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )  # fmt: skip
    assert response.status_code == 413


def test_duplicate_is_stored_and_audited_once(world: Any, pipeline_a: Pipeline) -> None:
    client = pipeline_a.client()
    event = _good()
    first = post(client, event)
    assert first.status_code == 201
    audits = AuditEvent.objects.filter(action=AUDIT_ACTION).count()
    edges = LineageEdge.objects.count()
    # Same content, different key order and whitespace: still the same event.
    reordered = json.dumps(dict(reversed(list(copy.deepcopy(event).items()))), indent=3)
    second = pipeline_a.client().generic(
        "POST", "/api/v1/lineage", reordered, content_type="application/json"
    )
    assert second.status_code == 200
    assert second.json() == {**first.json(), "stored": False}
    assert LineageEvent.objects.count() == 1
    assert AuditEvent.objects.filter(action=AUDIT_ACTION).count() == audits
    assert LineageEdge.objects.count() == edges
    # In one batch with a new event: one stored, one duplicate.
    response = post(client, [event, run_event(), event], "/api/v1/lineage/batch")
    assert response.status_code == 201
    assert [e["stored"] for e in response.json()["events"]] == [False, True, False]
    assert response.json()["duplicates"] == 2


def test_batch_is_all_or_nothing_and_names_the_event(world: Any, pipeline_a: Pipeline) -> None:
    before = _counts()
    bad = run_event()
    bad["run"]["runId"] = "nope"
    response = post(pipeline_a.client(), [run_event(), bad], "/api/v1/lineage/batch")
    assert response.status_code == 400
    assert "must be a UUID" in response.json()["errors"]["[1].run.runId"][0]
    assert _counts() == before
    response = post(pipeline_a.client(), {"events": []}, "/api/v1/lineage/batch")
    assert response.status_code == 400 and "array" in response.json()["errors"]["body"][0]
    response = post(pipeline_a.client(), [], "/api/v1/lineage/batch")
    assert response.status_code == 400
    response = post(pipeline_a.client(), [run_event(), 5], "/api/v1/lineage/batch")
    assert response.status_code == 400 and "[1]" in response.json()["errors"]


def test_each_stored_event_has_an_audit_event_in_the_same_transaction(
    world: Any, pipeline_a: Pipeline
) -> None:
    start = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    response = post(pipeline_a.client(), [run_event(), run_event()], "/api/v1/lineage/batch")
    ids = {str(e["id"]) for e in response.json()["events"]}
    events = AuditEvent.objects.filter(seq__gt=start)
    assert {(e.action, e.object_id) for e in events} == {(AUDIT_ACTION, i) for i in ids}
    assert all(e.actor_repr == "etl_a" and e.channel == "api" for e in events)


# ------------------------------------------------------------------ use case


def test_use_case_from_a_token_scoped_to_one(world: Any, pipeline_a: Pipeline) -> None:
    response = post(pipeline_a.client(), run_event())
    assert response.json()["useCase"] == world.uc_a.pk
    node = LineageNode.objects.get(key="job:etl:clean")
    assert node.use_case_id == world.uc_a.pk


def test_use_case_from_the_callers_only_contributable_one(world: Any) -> None:
    _, secret = issue_token(Access.system(), user=world.users["contributor_b"], name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert post(client, run_event()).json()["useCase"] == world.uc_b.pk


def test_use_case_from_the_charter_facet_by_id_or_name(world: Any) -> None:
    client = world.client("admin")  # may contribute anywhere: the facet decides
    event = run_event(run_facets={"charter": charter(useCase=world.uc_b.pk)})
    assert post(client, event).json()["useCase"] == world.uc_b.pk
    event = run_event(job_facets={"charter": charter(useCase="Credit scoring")})
    assert post(client, event).json()["useCase"] == world.uc_a.pk


def test_no_use_case_no_intake(world: Any) -> None:
    before = _counts()
    response = post(world.client("admin"), run_event())
    assert response.status_code == 400
    assert "run.facets.charter.useCase" in response.json()["errors"]
    response = post(world.client("admin"), run_event(run_facets={"charter": charter(useCase=999)}))
    assert response.status_code == 400
    assert "unknown use case" in response.json()["errors"]["run.facets.charter.useCase"][0]
    assert _counts() == before


def test_use_cases_the_caller_may_not_write_to_are_refused(
    world: Any, pipeline_a: Pipeline
) -> None:
    before = _counts()
    # Visible but read-only: 403.
    event = run_event(run_facets={"charter": charter(useCase=world.uc_a.pk)})
    response = post(world.client("board"), event)
    assert response.status_code == 403 and "Credit scoring" in response.json()["detail"]
    assert post(world.client("viewer_a"), event).status_code == 403
    # Invisible: unknown, as everywhere in the API.
    event = run_event(run_facets={"charter": charter(useCase=world.uc_b.pk)})
    response = post(pipeline_a.client(), event)
    assert response.status_code == 400
    assert "unknown use case" in response.json()["errors"]["run.facets.charter.useCase"][0]
    assert post(world.client("outsider"), run_event()).status_code == 400
    assert APIClient().post("/api/v1/lineage", run_event(), format="json").status_code == 401
    assert _counts() == before


# ------------------------------------------------------------------ append-only


@pytest.mark.parametrize(
    "sql",
    ["UPDATE lineage_lineageevent SET producer = 'x'", "DELETE FROM lineage_lineageevent"],
)
def test_raw_events_cannot_be_changed_or_deleted(
    world: Any, pipeline_a: Pipeline, sql: str
) -> None:
    post(pipeline_a.client(), run_event())
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert LineageEvent.objects.filter(producer=PRODUCER).count() == 1
