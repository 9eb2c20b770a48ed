"""Graph queries on a hand-built graph with known answers, and what each user sees of it.

Use case A's pipeline ingests raw customers into a clean table, and builds features from
it that are registry dataset version dv_a (which trained mv_a, deployed as dep_a, serving
use case A). Use case B's pipeline reads A's clean table into fraud features, registered
as dv_b (→ mv_b → dep_b → use case B)::

    raw ─▶ r1 ─▶ clean ─▶ r2 ─▶ dv_a ─▶ mv_a ─▶ dep_a ─▶ uc_a
                   │  └─column─▶ features ─version─▶ dv_a
                   └──▶ r3 ─▶ dv_b ─▶ mv_b ─▶ dep_b ─▶ uc_b        (r3, dv_b, …: use case B)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from django.utils import timezone

from lineage.models import LineageNode
from portal.permissions import Access
from registry import services
from tests import factories as f
from tests.lineage.conftest import Pipeline, charter, dataset, facet, post, run_event

RAW = "dataset:s3://raw:customers.csv"
CLEAN = "dataset:s3://lake:customers_clean"
FEATURES = "dataset:s3://lake:credit_features"
FRAUD = "dataset:s3://lake:fraud_features"
INGEST, BUILD, PREP = "job:etl:ingest", "job:etl:credit_features", "job:fraud:prep"
R1, R2, R3 = (
    "run:00000000-0000-4000-8000-000000000001",
    "run:00000000-0000-4000-8000-000000000002",
    "run:00000000-0000-4000-8000-000000000003",
)


@dataclass
class G:
    world: Any
    k: dict[str, str]

    def get(self, who: str, url: str, **params: Any) -> Any:
        return self.world.client(who).get(url, params)


def _ids(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["id"] for n in nodes}


@pytest.fixture
def g(world: Any, pipeline_a: Pipeline, pipeline_b: Pipeline) -> G:
    a, b = world.tree["a"], world.tree["b"]
    columns = facet(
        "ColumnLineageDatasetFacet",
        fields={"spend": {"inputFields": [{"namespace": "s3://lake", "name": "customers_clean",
                                           "field": "amount"}]}},
    )  # fmt: skip
    events_a = [
        run_event(
            run_id=R1[4:],
            job=("etl", "ingest"),
            inputs=[dataset("s3://raw", "customers.csv")],
            outputs=[dataset("s3://lake", "customers_clean")],
        ),
        run_event(
            run_id=R2[4:],
            job=("etl", "credit_features"),
            inputs=[dataset("s3://lake", "customers_clean")],
            outputs=[
                dataset(
                    "s3://lake",
                    "credit_features",
                    charter=charter(datasetVersion=a["dataset_version"].pk),
                    columnLineage=columns,
                )
            ],
        ),
    ]
    event_b = run_event(
        run_id=R3[4:],
        job=("fraud", "prep"),
        inputs=[dataset("s3://lake", "customers_clean")],
        outputs=[
            dataset(
                "s3://lake",
                "fraud_features",
                charter=charter(datasetVersion=b["dataset_version"].pk),
            )
        ],
    )
    assert post(pipeline_a.client(), events_a, "/api/v1/lineage/batch").status_code == 201
    assert post(pipeline_b.client(), event_b).status_code == 201
    k = {}
    for side in ("a", "b"):
        t = world.tree[side]
        k[f"dv_{side}"] = f"dataset_version:{t['dataset_version'].pk}"
        k[f"mv_{side}"] = f"model_version:{t['model_version'].pk}"
        k[f"dep_{side}"] = f"deployment:{t['deployment'].pk}"
        k[f"uc_{side}"] = f"use_case:{t['use_case'].pk}"
    return G(world, k)


# ------------------------------------------------------------------ answers (admin sees all)


def test_impact_finds_every_model_deployment_and_use_case_with_paths(g: G) -> None:
    response = g.get("admin", "/api/v1/lineage/impact", nodeId=RAW)
    assert response.status_code == 200, response.json()
    data = response.json()
    k = g.k
    assert _ids(data["modelVersions"]) == {k["mv_a"], k["mv_b"]}
    assert _ids(data["deployments"]) == {k["dep_a"], k["dep_b"]}
    assert _ids(data["useCases"]) == {k["uc_a"], k["uc_b"]}
    paths = {n["id"]: n["path"] for n in data["modelVersions"] + data["useCases"]}
    assert paths[k["mv_a"]] == [RAW, R1, CLEAN, R2, k["dv_a"], k["mv_a"]]
    assert paths[k["mv_b"]] == [RAW, R1, CLEAN, R3, k["dv_b"], k["mv_b"]]
    assert paths[k["uc_b"]][-3:] == [k["mv_b"], k["dep_b"], k["uc_b"]]
    assert {n["id"]: n["depth"] for n in data["modelVersions"]} == {k["mv_a"]: 5, k["mv_b"]: 5}
    assert data["counts"] == {
        "dataset": 2,  # raw and clean; features is reached only by a column edge
        "run": 3,
        "dataset_version": 2,
        "model_version": 2,
        "deployment": 2,
        "use_case": 2,
    }
    # A shorter walk stops before the models.
    short = g.get("admin", "/api/v1/lineage/impact", nodeId=RAW, depth=4).json()
    assert short["modelVersions"] == [] and short["counts"]["dataset_version"] == 2


def test_impact_pages_each_kind_and_keeps_whole_totals(g: G) -> None:
    whole = g.get("admin", "/api/v1/lineage/impact", nodeId=RAW).json()
    assert whole["complete"] is True and whole["limit"] == 250 and whole["offset"] == 0
    assert whole["total"] == {"model_version": 2, "deployment": 2, "use_case": 2}
    first = g.get("admin", "/api/v1/lineage/impact", nodeId=RAW, limit=1).json()
    second = g.get("admin", "/api/v1/lineage/impact", nodeId=RAW, limit=1, offset=1).json()
    for kind in ("modelVersions", "deployments", "useCases"):
        assert len(first[kind]) == len(second[kind]) == 1
        # the two pages are disjoint and together give the whole list, paths included
        assert first[kind] + second[kind] == whole[kind]
    assert first["complete"] is False and first["total"] == whole["total"]
    assert first["counts"] == whole["counts"]
    beyond = g.get("admin", "/api/v1/lineage/impact", nodeId=RAW, offset=5).json()
    assert beyond["modelVersions"] == [] and beyond["complete"] is False


def test_impact_from_a_registry_dataset_version(g: G) -> None:
    data = g.get("admin", "/api/v1/lineage/impact", nodeId=g.k["dv_a"]).json()
    assert _ids(data["modelVersions"]) == {g.k["mv_a"]}
    assert _ids(data["useCases"]) == {g.k["uc_a"]}
    assert data["deployments"][0]["path"] == [g.k["dv_a"], g.k["mv_a"], g.k["dep_a"]]


def test_upstream_and_downstream(g: G) -> None:
    k = g.k
    up = g.get("admin", "/api/v1/lineage/upstream", nodeId=k["mv_a"]).json()
    assert _ids(up["nodes"]) == {k["mv_a"], k["dv_a"], R2, BUILD, FEATURES, CLEAN, R1, INGEST, RAW}
    depth = {n["id"]: n["depth"] for n in up["nodes"]}
    assert depth[k["dv_a"]] == 1 and depth[R2] == 2 and depth[RAW] == 5
    edges = {(e["origin"], e["destination"], e["kind"]) for e in up["edges"]}
    assert (FEATURES, k["dv_a"], "version") in edges and (R2, k["dv_a"], "output") in edges
    down = g.get("admin", "/api/v1/lineage/downstream", nodeId=CLEAN, depth=2).json()
    assert _ids(down["nodes"]) == {CLEAN, R2, R3, k["dv_a"], k["dv_b"]}
    assert down["truncated"] is False


def test_neighbourhood_is_marquez_shaped_with_column_lineage(g: G) -> None:
    data = g.get("admin", "/api/v1/lineage", nodeId=CLEAN, depth=1).json()
    by_id = {n["id"]: n for n in data["graph"]}
    assert set(by_id) == {CLEAN, R1, R2, R3, FEATURES}
    clean = by_id[CLEAN]
    assert clean["type"] == "DATASET" and clean["linked"] is False
    assert {(e["origin"], e["kind"]) for e in clean["inEdges"]} == {(R1, "output")}
    outs = {(e["destination"], e["kind"]): e for e in clean["outEdges"]}
    assert set(outs) == {(R2, "input"), (R3, "input"), (FEATURES, "column")}
    assert outs[(FEATURES, "column")]["columns"] == {"fields": {"spend": [{"field": "amount"}]}}
    deeper = g.get("admin", "/api/v1/lineage", nodeId=CLEAN, depth=2).json()
    assert {n["id"] for n in deeper["graph"]} == {
        CLEAN, R1, R2, R3, FEATURES, RAW, INGEST, g.k["dv_a"], g.k["dv_b"],
    }  # fmt: skip
    # Numeric node ids work too.
    pk = LineageNode.objects.get(key=CLEAN).pk
    assert g.get("admin", "/api/v1/lineage", nodeId=pk, depth=0).json()["node"]["id"] == CLEAN


def test_shortest_path_either_way(g: G) -> None:
    k = g.k
    data = g.get("admin", "/api/v1/lineage/path", **{"from": RAW, "to": k["uc_a"]}).json()
    assert data["found"] and data["direction"] == "downstream" and data["length"] == 7
    assert [n["id"] for n in data["nodes"]] == [
        RAW, R1, CLEAN, R2, k["dv_a"], k["mv_a"], k["dep_a"], k["uc_a"],
    ]  # fmt: skip
    assert [e["kind"] for e in data["edges"]] == [
        "input", "output", "input", "output", "trained_on", "deployed_as", "serves",
    ]  # fmt: skip
    back = g.get("admin", "/api/v1/lineage/path", **{"from": k["uc_b"], "to": CLEAN}).json()
    assert back["direction"] == "upstream" and back["length"] == 5
    assert back["nodes"][-2]["id"] == R3
    none = g.get("admin", "/api/v1/lineage/path", **{"from": RAW, "to": BUILD}).json()
    assert none == {**none, "found": False} and "nodes" not in none


# ------------------------------------------------------------------ permissions


def test_a_viewer_of_a_sees_bs_part_as_placeholders(g: G) -> None:
    k = g.k
    for who in ("contributor_a", "viewer_a"):
        response = g.get(who, "/api/v1/lineage/impact", nodeId=RAW)
        assert response.status_code == 200
        data = response.json()
        visible = {n["id"] for n in data["modelVersions"] if not n["redacted"]}
        hidden = [n for n in data["modelVersions"] if n["redacted"]]
        assert visible == {k["mv_a"]}
        assert len(hidden) == 1 and hidden[0]["kind"] == "model_version"
        assert set(hidden[0]) == {"id", "kind", "type", "redacted", "depth", "path"}
        assert hidden[0]["id"].startswith("hidden:")
        path = hidden[0]["path"]
        assert path[:3] == [RAW, R1, CLEAN] and all(p.startswith("hidden:") for p in path[3:])
        assert path[-1] == hidden[0]["id"]  # the same placeholder within one answer
        text = response.content.decode()
        for secret in ("fraud", k["mv_b"], k["dv_b"], R3, "Fraud detection"):
            assert secret not in text, f"{secret} leaked to {who}"


def test_b_sees_as_upstream_as_placeholders_and_a_start_is_404(g: G) -> None:
    k = g.k
    data = g.get("contributor_b", "/api/v1/lineage/upstream", nodeId=k["mv_b"]).json()
    shown = {n["id"] for n in data["nodes"] if not n["redacted"]}
    assert shown == {k["mv_b"], k["dv_b"], R3, PREP, FRAUD}
    hidden = sorted(n["kind"] for n in data["nodes"] if n["redacted"])
    assert hidden == ["dataset", "dataset", "job", "run"]  # clean, raw, ingest job, r1
    assert "customers" not in json.dumps(data)
    assert len(data["edges"]) == 8
    for url in ("/api/v1/lineage", "/api/v1/lineage/impact", "/api/v1/lineage/upstream"):
        assert g.get("contributor_b", url, nodeId=RAW).status_code == 404
    assert (
        g.get("contributor_b", "/api/v1/lineage/path", **{"from": k["mv_b"], "to": RAW})
    ).status_code == 404


def test_outsider_gets_404_everywhere(g: G) -> None:
    pk = LineageNode.objects.get(key=RAW).pk
    assert g.get("outsider", f"/api/v1/lineage/nodes/{pk}/").status_code == 404
    assert g.get("outsider", "/api/v1/lineage", nodeId=RAW).status_code == 404
    assert g.get("outsider", "/api/v1/lineage/impact", nodeId=pk).status_code == 404
    assert g.get("outsider", "/api/v1/lineage/nodes/").json()["results"] == []
    assert g.get("outsider", "/api/v1/lineage/events/").json()["results"] == []
    assert g.get("viewer_a", f"/api/v1/lineage/nodes/{pk}/").json()["key"] == RAW


def test_node_and_event_lists_are_scoped(g: G) -> None:
    data = g.get("contributor_b", "/api/v1/lineage/nodes/", kind="dataset").json()
    assert [n["key"] for n in data["results"]] == [FRAUD]
    data = g.get("auditor", "/api/v1/lineage/nodes/", kind="dataset", linked="true").json()
    assert {n["key"] for n in data["results"]} == {FEATURES, FRAUD}
    events = g.get("contributor_b", "/api/v1/lineage/events/").json()["results"]
    assert [e["job_name"] for e in events] == ["prep"] and "payload" not in events[0]
    detail = g.get("contributor_b", f"/api/v1/lineage/events/{events[0]['id']}/").json()
    assert detail["payload"]["run"]["runId"] == R3[4:]
    assert len(g.get("auditor", "/api/v1/lineage/events/").json()["results"]) == 3


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/lineage", {}, "nodeId"),
        ("/api/v1/lineage/impact", {"nodeId": RAW, "depth": "-1"}, "depth"),
        ("/api/v1/lineage/upstream", {"nodeId": RAW, "depth": "deep"}, "depth"),
        ("/api/v1/lineage/impact", {"nodeId": RAW, "limit": "many"}, "limit"),
        ("/api/v1/lineage/impact", {"nodeId": RAW, "offset": "-3"}, "offset"),
        ("/api/v1/lineage/path", {"from": RAW}, "to"),
        ("/api/v1/lineage/production", {}, "at"),
        ("/api/v1/lineage/production", {"at": "2026-01-01"}, "at"),
        ("/api/v1/lineage/production", {"at": "2026-01-01T00:00:00Z", "environment": "x"},
         "environment"),
    ],
)  # fmt: skip
def test_bad_query_parameters_are_named(g: G, url: str, params: dict, field: str) -> None:
    response = g.get("admin", url, **params)
    assert response.status_code == 400 and field in response.json()["errors"], response.json()


def test_unknown_node_is_404(g: G) -> None:
    assert g.get("admin", "/api/v1/lineage", nodeId="dataset:nowhere:x").status_code == 404


# ------------------------------------------------------------------ time


def _tick() -> Any:
    time.sleep(0.01)
    moment = timezone.now()
    time.sleep(0.01)
    return moment


def test_what_was_in_production_at_a_time_and_what_it_was_trained_on(
    world: Any, settings: Any
) -> None:
    settings.CHARTER_GATED_ENVIRONMENTS = []  # the deployment gate is tested in tests/approvals
    system = Access.system()
    t = world.tree["a"]
    mv1, dv1 = t["model_version"], t["dataset_version"]
    dv2 = f.dataset_version(t["dataset"])
    mv2 = f.model_version(t["model"], parent=mv1, training_datasets=[dv2], test_datasets=[dv1])
    before = _tick()
    first = f.deployment(mv1, environment="production", released_at=timezone.now())
    during_first = _tick()
    second = f.deployment(mv2, environment="production", replaces=first, released_at=timezone.now())
    during_second = _tick()
    services.update_model_version(system, mv2, training_datasets=[dv1])
    after_change = _tick()
    client = world.client("auditor")

    def at(moment: Any, **extra: Any) -> list[dict[str, Any]]:
        response = client.get("/api/v1/lineage/production", {"at": moment.isoformat(), **extra})
        assert response.status_code == 200, response.json()
        return response.json()["deployments"]

    assert at(before) == []
    (live,) = at(during_first)
    assert live["deployment"]["id"] == f"deployment:{first.pk}"
    assert live["modelVersion"]["id"] == f"model_version:{mv1.pk}"
    assert [n["id"] for n in live["trainedOn"]] == [f"dataset_version:{dv1.pk}"]
    (live,) = at(during_second)
    assert live["deployment"]["id"] == f"deployment:{second.pk}"
    assert [n["id"] for n in live["trainedOn"]] == [f"dataset_version:{dv2.pk}"]
    assert [n["id"] for n in live["testedOn"]] == [f"dataset_version:{dv1.pk}"]
    assert live["liveUntil"] is None
    (live,) = at(after_change)  # the registry changed its training data since
    assert [n["id"] for n in live["trainedOn"]] == [f"dataset_version:{dv1.pk}"]
    # The staging deployments of the world are not production.
    assert {d["deployment"]["id"] for d in at(after_change, environment="staging")} == {
        f"deployment:{world.tree[side]['deployment'].pk}" for side in "ab"
    }
    # With depth, the model version's provenance comes along.
    (live,) = at(during_second, depth=3)
    assert f"dataset_version:{dv2.pk}" in _ids(live["upstream"]["nodes"])
    # Another use case's contributor sees none of it.
    response = world.client("contributor_b").get(
        "/api/v1/lineage/production", {"at": during_second.isoformat()}
    )
    assert response.json()["deployments"] == []
