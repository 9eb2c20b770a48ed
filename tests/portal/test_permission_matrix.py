"""Who may do what through the API: every role × every registry endpoint × read/write.

Expected rules: admin, board, risk officer and auditor read everything;
contributor_a reads only use case A's tree and contributor_b only B's; viewer_a
reads A and writes nothing; the outsider sees nothing. Writes under a use case
need contribute rights (contributors on their own use case, admins). Board and
auditor write nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

ROLES = [
    "admin",
    "board",
    "risk",
    "auditor",
    "contributor_a",
    "contributor_b",
    "viewer_a",
    "outsider",
]
SEES_A = {"admin", "board", "risk", "auditor", "contributor_a", "viewer_a"}
SEES_B = {"admin", "board", "risk", "auditor", "contributor_b"}
WRITES_A = {"admin", "contributor_a"}
CHANGES_USE_CASE_A = {"admin", "risk"}

ENDPOINTS = {
    "use-cases": "use_case",
    "datasets": "dataset",
    "dataset-versions": "dataset_version",
    "models": "model",
    "model-versions": "model_version",
    "evidence": "evidence",
    "artifacts": "artifact",
    "deployments": "deployment",
}


def new_child_payload(world: Any, endpoint: str) -> dict[str, Any]:
    tree = world.tree["a"]
    return {
        "datasets": {"use_case": world.uc_a.pk, "name": "matrix-ds"},
        "dataset-versions": {"dataset": tree["dataset"].pk, "version": "matrix"},
        "models": {"use_case": world.uc_a.pk, "name": "matrix-model"},
        "model-versions": {"model": tree["model"].pk, "version": "matrix"},
        "evidence": {
            "model_version": tree["model_version"].pk,
            "kind": "test_results",
            "title": "matrix",
            "sha256": "b" * 64,
        },
        "artifacts": {
            "model_version": tree["model_version"].pk,
            "name": "m.onnx",
            "uri": "s3://m",
            "sha256": "c" * 64,
            "size_bytes": 10,
        },
        "deployments": {"model_version": tree["model_version"].pk, "environment": "staging"},
    }[endpoint]


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_list_and_detail_visibility(world: Any, who: str, endpoint: str) -> None:
    client = world.client(who)
    key = ENDPOINTS[endpoint]
    a, b = world.tree["a"][key], world.tree["b"][key]
    listed = {
        row["id"] for row in client.get(f"/api/v1/{endpoint}/?page_size=500").json()["results"]
    }
    for obj, allowed, label in ((a, who in SEES_A, "A"), (b, who in SEES_B, "B")):
        if allowed:
            assert obj.pk in listed, f"{endpoint} of {label} missing for {who}"
            assert client.get(f"/api/v1/{endpoint}/{obj.pk}/").status_code == 200
        else:
            assert obj.pk not in listed, f"{endpoint} of {label} leaked to {who}"
            assert client.get(f"/api/v1/{endpoint}/{obj.pk}/").status_code == 404


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e != "use-cases"])
def test_create_under_a(world: Any, who: str, endpoint: str) -> None:
    response = world.client(who).post(
        f"/api/v1/{endpoint}/", new_child_payload(world, endpoint), format="json"
    )
    if who in WRITES_A:
        assert response.status_code == 201, (who, endpoint, response.json())
    elif who in SEES_A:
        assert response.status_code == 403, (who, endpoint, response.json())
    else:  # the parent is invisible: an unknown reference, naming the field
        assert response.status_code == 400, (who, endpoint, response.json())


PATCHABLE = {
    "datasets": {"description": "patched"},
    "dataset-versions": {"license": "CC-BY-4.0"},
    "models": {"description": "patched"},
    "model-versions": {"limitations": "patched"},
}


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("endpoint", list(PATCHABLE))
def test_patch_in_a(world: Any, who: str, endpoint: str) -> None:
    obj = world.tree["a"][ENDPOINTS[endpoint]]
    response = world.client(who).patch(
        f"/api/v1/{endpoint}/{obj.pk}/", PATCHABLE[endpoint], format="json"
    )
    expected = 200 if who in WRITES_A else 403 if who in SEES_A else 404
    assert response.status_code == expected, (who, endpoint, response.content[:300])


@pytest.mark.parametrize("who", ROLES)
def test_use_case_create_change_and_transition(world: Any, who: str) -> None:
    client = world.client(who)
    created = client.post("/api/v1/use-cases/", {"name": f"new {who}", "purpose": "p"})
    can_create = who in {"admin", "risk", "contributor_a", "contributor_b"}
    assert created.status_code == (201 if can_create else 403), (who, created.json())
    if can_create and who.startswith("contributor"):  # the proposer owns what they propose
        uc_id = created.json()["id"]
        assert client.patch(f"/api/v1/use-cases/{uc_id}/", {"purpose": "mine"}).status_code == 200

    patched = client.patch(f"/api/v1/use-cases/{world.uc_a.pk}/", {"risk_rationale": "r"})
    moved = client.post(f"/api/v1/use-cases/{world.uc_a.pk}/transition/", {"status": "assessed"})
    expected = 200 if who in CHANGES_USE_CASE_A else 403 if who in SEES_A else 404
    assert patched.status_code == expected, who
    assert moved.status_code == expected, who


@pytest.mark.parametrize("who", ROLES)
def test_model_version_transition(world: Any, who: str) -> None:
    mv = world.tree["a"]["model_version"]
    response = world.client(who).post(
        f"/api/v1/model-versions/{mv.pk}/transition/", {"status": "in_review"}, format="json"
    )
    expected = 200 if who in WRITES_A else 403 if who in SEES_A else 404
    assert response.status_code == expected, who


@pytest.mark.parametrize("endpoint", ["evidence", "artifacts", "deployments"])
def test_records_of_fact_cannot_be_edited(world: Any, endpoint: str) -> None:
    obj = world.tree["a"][ENDPOINTS[endpoint]]
    response = world.client("admin").patch(f"/api/v1/{endpoint}/{obj.pk}/", {}, format="json")
    assert response.status_code == 405


@pytest.mark.parametrize("who", ROLES)
def test_grants_api_is_for_admins(world: Any, who: str) -> None:
    response = world.client(who).post(
        "/api/v1/access/grants/",
        {"use_case": world.uc_a.pk, "user": "outsider", "level": "view"},
        format="json",
    )
    expected = 204 if who == "admin" else 403 if who in SEES_A else 400
    assert response.status_code == expected, (who, response.content[:300])


def test_anonymous_gets_401_everywhere(world: Any) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    for endpoint in ENDPOINTS:
        assert client.get(f"/api/v1/{endpoint}/").status_code == 401
    assert client.post("/api/v1/datasets/", {}).status_code == 401
