"""Registry writes create their lineage nodes and edges; OpenLineage datasets link to them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from lineage.models import LineageEdge, LineageNode
from portal.permissions import Access
from registry import services
from registry.models import Deployment
from tests import factories as f
from tests.lineage.conftest import Pipeline, charter, dataset, facet, post, run_event

SYSTEM = Access.system()


def live_edges(kind: str | None = None) -> set[tuple[str, str, str]]:
    qs = LineageEdge.objects.filter(removed_at=None, source="registry")
    if kind:
        qs = qs.filter(kind=kind)
    return {(e.src.key, e.dst.key, e.kind) for e in qs.select_related("src", "dst")}


def key(obj: Any) -> str:
    kind = {
        "UseCase": "use_case",
        "DatasetVersion": "dataset_version",
        "ModelVersion": "model_version",
        "Deployment": "deployment",
    }[type(obj).__name__]
    return f"{kind}:{obj.pk}"


def test_the_world_trees_have_their_registry_edges(world: Any) -> None:
    for side in ("a", "b"):
        t = world.tree[side]
        dv, mv, dep, uc = t["dataset_version"], t["model_version"], t["deployment"], t["use_case"]
        expected = {
            (key(dv), key(mv), "trained_on"),
            (key(mv), key(dep), "deployed_as"),
            (key(dep), key(uc), "serves"),
        }
        assert expected <= live_edges()
        for obj in (dv, mv, dep, uc):
            node = LineageNode.objects.get(key=key(obj))
            assert node.use_case_id == uc.pk and node.object_id == obj.pk
        assert LineageNode.objects.get(key=key(mv)).label == f"{mv.model.name}@{mv.version}"


def test_model_version_links_follow_the_registry(world: Any) -> None:
    t = world.tree["a"]
    ds = t["dataset"]
    raw = f.dataset_version(ds)
    clean = f.dataset_version(ds, derived_from=[raw])
    holdout = f.dataset_version(ds)
    assert (key(raw), key(clean), "derived_from") in live_edges()
    retrained = f.model_version(
        t["model"],
        parent=t["model_version"],
        training_datasets=[clean],
        validation_datasets=[holdout],
        test_datasets=[holdout],
    )
    assert {
        (key(t["model_version"]), key(retrained), "retrained_from"),
        (key(clean), key(retrained), "trained_on"),
        (key(holdout), key(retrained), "validated_on"),
        (key(holdout), key(retrained), "tested_on"),
    } <= live_edges()
    # Changing the training data ends the old edge (kept, with removed_at) and adds the new one.
    services.update_model_version(SYSTEM, retrained, training_datasets=[raw])
    assert (key(clean), key(retrained), "trained_on") not in live_edges()
    assert (key(raw), key(retrained), "trained_on") in live_edges()
    ended = LineageEdge.objects.get(src__key=key(clean), dst__key=key(retrained), kind="trained_on")
    assert ended.removed_at is not None
    # The reverse side of the relation works too.
    holdout.trained_model_versions.add(retrained)
    assert (key(holdout), key(retrained), "trained_on") in live_edges()
    holdout.tested_model_versions.clear()
    assert (key(holdout), key(retrained), "tested_on") not in live_edges()
    services.update_dataset_version(SYSTEM, clean, derived_from=[holdout])
    assert (key(raw), key(clean), "derived_from") not in live_edges()
    assert (key(holdout), key(clean), "derived_from") in live_edges()
    services.update_model_version(SYSTEM, retrained, parent=None)
    assert (key(t["model_version"]), key(retrained), "retrained_from") not in live_edges()


def test_deployments_record_when_they_were_live(world: Any, settings: Any) -> None:
    settings.CHARTER_GATED_ENVIRONMENTS = []  # the deployment gate is tested in tests/approvals
    mv = world.tree["a"]["model_version"]
    first = f.deployment(mv, environment="production")
    node = LineageNode.objects.get(key=key(first))
    assert node.valid_from == first.released_at and node.valid_to is None
    second = f.deployment(mv, environment="production", replaces=first)
    node.refresh_from_db()
    assert node.attrs["status"] == "replaced"
    assert node.valid_to == second.released_at
    assert node.attrs["live"] == [[first.released_at.isoformat(), second.released_at.isoformat()]]
    services.rollback_deployment(SYSTEM, second, reason="bad")
    node2 = LineageNode.objects.get(key=key(second))
    assert node2.valid_to is not None and node2.attrs["status"] == "rolled_back"
    restored = Deployment.objects.get(replaces=second)
    assert (key(mv), key(restored), "deployed_as") in live_edges()


def test_graph_writes_roll_back_with_the_registry_write(world: Any) -> None:
    before = (LineageNode.objects.count(), LineageEdge.objects.count())
    with pytest.raises(RuntimeError), transaction.atomic():
        f.model_version(
            world.tree["a"]["model"], training_datasets=[world.tree["a"]["dataset_version"]]
        )
        raise RuntimeError("the caller fails after the write")
    assert (LineageNode.objects.count(), LineageEdge.objects.count()) == before


def test_deleting_a_registry_record_removes_its_node(world: Any) -> None:
    mv = f.model_version(world.tree["a"]["model"])
    assert LineageNode.objects.filter(key=key(mv)).exists()
    services.delete_object(SYSTEM, mv, reason="registered by mistake")
    assert not LineageNode.objects.filter(key=key(mv)).exists()


# ------------------------------------------------------------------ OpenLineage links


def _linked_run(pipeline: Pipeline, **output_facets: Any) -> Any:
    event = run_event(
        inputs=[dataset("s3://raw", "loans.csv")],
        outputs=[dataset("s3://lake", "loans/clean.parquet", **output_facets)],
        job=("spark", "loans.clean"),
    )
    response = post(pipeline.client(), event)
    assert response.status_code == 201, response.json()
    return event


def _output_target(event: dict[str, Any]) -> set[str]:
    run = f"run:{event['run']['runId']}"
    return {
        e.dst.key
        for e in LineageEdge.objects.filter(src__key=run, kind="output").select_related("dst")
    }


def test_dataset_linked_by_charter_facet_id(world: Any, pipeline_a: Pipeline) -> None:
    dv = world.tree["a"]["dataset_version"]
    event = _linked_run(pipeline_a, charter=charter(datasetVersion=dv.pk))
    assert _output_target(event) == {key(dv)}
    ol = LineageNode.objects.get(key="dataset:s3://lake:loans/clean.parquet")
    assert ol.linked is True
    assert LineageEdge.objects.filter(src=ol, dst__key=key(dv), kind="version").exists()
    assert LineageNode.objects.get(key="dataset:s3://raw:loans.csv").linked is False


def test_dataset_linked_by_digest_in_the_version_facet(world: Any, pipeline_a: Pipeline) -> None:
    dv = world.tree["a"]["dataset_version"]
    event = _linked_run(
        pipeline_a, version=facet("DatasetVersionDatasetFacet", datasetVersion=dv.sha256)
    )
    assert _output_target(event) == {key(dv)}


def test_dataset_linked_by_uri_and_version_name(world: Any, pipeline_a: Pipeline) -> None:
    ds = world.tree["a"]["dataset"]
    older = f.dataset_version(ds, uri="s3://lake/loans/clean.parquet", version="2026-01")
    newer = f.dataset_version(ds, uri="s3://lake/loans/clean.parquet", version="2026-02")
    event = _linked_run(pipeline_a)  # no version given: the latest at the event's time
    assert _output_target(event) == {key(newer)}
    event = _linked_run(
        pipeline_a, version=facet("DatasetVersionDatasetFacet", datasetVersion="2026-01")
    )
    assert _output_target(event) == {key(older)}


def test_dataset_linked_by_registry_name_and_version(world: Any, pipeline_a: Pipeline) -> None:
    ds = f.dataset(world.uc_a, name="loans/clean.parquet")
    dv = f.dataset_version(ds, version="v7")
    event = _linked_run(
        pipeline_a, version=facet("DatasetVersionDatasetFacet", datasetVersion="v7")
    )
    assert _output_target(event) == {key(dv)}


def test_training_run_output_links_to_a_model_version(world: Any, pipeline_a: Pipeline) -> None:
    mv = world.tree["a"]["model_version"]
    event = _linked_run(pipeline_a, charter=charter(modelVersion=mv.pk))
    assert _output_target(event) == {key(mv)}


def test_links_only_to_what_the_caller_may_see(world: Any, pipeline_a: Pipeline) -> None:
    dv_b = world.tree["b"]["dataset_version"]
    event = run_event(outputs=[dataset("s3://lake", "x", charter=charter(datasetVersion=dv_b.pk))])
    response = post(pipeline_a.client(), event)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "unknown dataset version" in errors["outputs[0].facets.charter.datasetVersion"][0]
    # A matching digest of an invisible version simply does not link.
    event = _linked_run(
        pipeline_a, version=facet("DatasetVersionDatasetFacet", datasetVersion=dv_b.sha256)
    )
    assert _output_target(event) == {"dataset:s3://lake:loans/clean.parquet"}
    assert LineageNode.objects.get(key="dataset:s3://lake:loans/clean.parquet").linked is False


def test_parent_run_facet_links_runs(world: Any, pipeline_a: Pipeline) -> None:
    parent_run = "0b6c6f4e-6f43-4f8e-9d7e-6f3b0f3c2a10"
    parent = facet(
        "ParentRunFacet",
        run={"runId": parent_run},
        job={"namespace": "airflow", "name": "loans_dag"},
    )
    event = run_event(run_facets={"parent": parent})
    assert post(pipeline_a.client(), event).status_code == 201
    child = f"run:{event['run']['runId']}"
    edges = {
        (e.src.key, e.dst.key, e.kind)
        for e in LineageEdge.objects.select_related("src", "dst").filter(source="openlineage")
    }
    assert (f"run:{parent_run}", child, "parent") in edges
    assert ("job:airflow:loans_dag", f"run:{parent_run}", "run_of") in edges
    # The parent run's node exists before its own events arrive, without times yet.
    assert LineageNode.objects.get(key=f"run:{parent_run}").valid_from is None


def test_a_new_objects_node_takes_over_a_stale_node_with_its_key(world: Any) -> None:
    """A new registry object's node is inserted without a read first; a node left with the
    same key (SQLite can hand a deleted row's id out again) is updated, not duplicated."""
    from lineage.models import key_digest
    from lineage.registry_sync import NODE_KEY, upsert_node

    t = world.tree["a"]
    mv = t["model_version"]
    node = LineageNode.objects.get(key=key(mv))
    LineageNode.objects.filter(pk=node.pk).update(label="stale", attrs={"status": "old"})
    again = upsert_node(mv, created=True)
    assert again.pk == node.pk
    fresh = LineageNode.objects.get(key_hash=key_digest(key(mv)))
    assert fresh.label == f"{mv.model.name}@{mv.version}"
    assert fresh.attrs == {"status": mv.status}
    assert LineageNode.objects.filter(key=key(mv)).count() == 1
    # a version created through the service carries its node's key hash for its links
    created = f.model_version(t["model"], training_datasets=[t["dataset_version"]])
    assert getattr(created, NODE_KEY) == LineageNode.objects.get(key=key(created)).key_hash
    assert (key(t["dataset_version"]), key(created), "trained_on") in live_edges()
