from typing import Any

from audits.models import AuditEvent


def test_contributor_registers_model_version_with_links_in_one_call(world: Any) -> None:
    tree = world.tree["a"]
    client = world.client("contributor_a")
    before = AuditEvent.objects.count()
    response = client.post(
        "/api/v1/model-versions/",
        {
            "model": tree["model"].pk,
            "version": "2.0",
            "intended_use": "Score applications",
            "metrics": {"auc": 0.93},
            "subgroup_metrics": {"age<30": {"recall": 0.81}},
            "training_datasets": [tree["dataset_version"].pk],
            "parent": tree["model_version"].pk,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["training_datasets"] == [tree["dataset_version"].pk]
    assert body["registered_by"] == "contrib_a"
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "create" and event.object_id == str(body["id"])
    assert event.changes["after"]["training_datasets"] == [tree["dataset_version"].pk]


def test_contributor_of_b_cannot_see_a(world: Any) -> None:
    client = world.client("contributor_b")
    mv = world.tree["a"]["model_version"]
    assert client.get(f"/api/v1/model-versions/{mv.pk}/").status_code == 404
    ids = [row["id"] for row in client.get("/api/v1/model-versions/").json()["results"]]
    assert mv.pk not in ids and world.tree["b"]["model_version"].pk in ids
