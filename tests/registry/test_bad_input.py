"""Bad input gets a 4xx naming the field and the problem, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from audits.models import AuditEvent
from registry.models import Artifact, Dataset, Deployment, ModelVersion


def counts() -> tuple[int, ...]:
    return tuple(
        m.objects.count() for m in (AuditEvent, Dataset, ModelVersion, Artifact, Deployment)
    )


def assert_refused(response: Any, status: int, field: str | None) -> None:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    if field is not None:
        assert field in body["errors"], body
        messages = body["errors"][field]
        assert isinstance(messages, list) and messages, body
        assert all(isinstance(m, str) and m for m in messages), body


def test_malformed_json_names_the_body(world: Any) -> None:
    before = counts()
    response = world.client("contributor_a").post(
        "/api/v1/datasets/", data='{"name": "x", ', content_type="application/json"
    )
    assert_refused(response, 400, "body")
    assert "JSON parse error" in response.json()["detail"]
    assert counts() == before


def test_nan_and_infinity_are_refused(world: Any) -> None:
    mv_model = world.tree["a"]["model"].pk
    before = counts()
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"model": {mv_model}, "version": "n", "metrics": {{"auc": {literal}}}}}'
        response = world.client("contributor_a").post(
            "/api/v1/model-versions/", data=body, content_type="application/json"
        )
        assert_refused(response, 400, "body")
    assert counts() == before


CASES: list[tuple[str, str, Callable[[Any], dict[str, Any]], str]] = [
    (
        "metrics as a list",
        "/api/v1/model-versions/",
        lambda w: {"model": w.tree["a"]["model"].pk, "version": "x", "metrics": [0.9]},
        "metrics",
    ),
    (
        "non-numeric subgroup metric",
        "/api/v1/model-versions/",
        lambda w: {
            "model": w.tree["a"]["model"].pk,
            "version": "x",
            "subgroup_metrics": {"age<30": {"recall": "high"}},
        },
        "subgroup_metrics",
    ),
    (
        "boolean as a metric",
        "/api/v1/model-versions/",
        lambda w: {"model": w.tree["a"]["model"].pk, "version": "x", "metrics": {"auc": True}},
        "metrics",
    ),
    (
        "unknown model",
        "/api/v1/model-versions/",
        lambda w: {"model": 999999, "version": "x"},
        "model",
    ),
    (
        "dataset of an invisible use case",
        "/api/v1/model-versions/",
        lambda w: {
            "model": w.tree["a"]["model"].pk,
            "version": "x",
            "training_datasets": [w.tree["b"]["dataset_version"].pk],
        },
        "training_datasets",
    ),
    (
        "duplicate version",
        "/api/v1/model-versions/",
        lambda w: {
            "model": w.tree["a"]["model"].pk,
            "version": w.tree["a"]["model_version"].version,
        },
        "non_field_errors",
    ),
    (
        "wrong type for a name",
        "/api/v1/datasets/",
        lambda w: {"use_case": w.uc_a.pk, "name": {"not": "a string"}},
        "name",
    ),
    ("missing required field", "/api/v1/datasets/", lambda w: {"use_case": w.uc_a.pk}, "name"),
    (
        "sha256 not hex",
        "/api/v1/artifacts/",
        lambda w: {
            "model_version": w.tree["a"]["model_version"].pk,
            "name": "m",
            "uri": "s3://x",
            "sha256": "xyz",
            "size_bytes": 1,
        },
        "sha256",
    ),
    (
        "negative size",
        "/api/v1/artifacts/",
        lambda w: {
            "model_version": w.tree["a"]["model_version"].pk,
            "name": "m",
            "uri": "s3://x",
            "sha256": "a" * 64,
            "size_bytes": -5,
        },
        "size_bytes",
    ),
    (
        "traffic share above 1",
        "/api/v1/deployments/",
        lambda w: {
            "model_version": w.tree["a"]["model_version"].pk,
            "environment": "staging",
            "traffic_share": 1.5,
        },
        "traffic_share",
    ),
    (
        "unknown environment",
        "/api/v1/deployments/",
        lambda w: {"model_version": w.tree["a"]["model_version"].pk, "environment": "moon"},
        "environment",
    ),
    (
        "replacing an inactive deployment",
        "/api/v1/deployments/",
        lambda w: {
            "model_version": w.tree["a"]["model_version"].pk,
            "environment": "staging",
            "replaces": w.tree["b"]["deployment"].pk,
        },
        "replaces",
    ),
    (
        "unknown risk tier",
        "/api/v1/use-cases/",
        lambda w: {"name": "n", "purpose": "p", "risk_tier": "extreme"},
        "risk_tier",
    ),
    (
        "unknown owner",
        "/api/v1/use-cases/",
        lambda w: {"name": "n", "purpose": "p", "business_owner": "nobody"},
        "business_owner",
    ),
]


@pytest.mark.parametrize(("label", "url", "payload", "field"), CASES, ids=[c[0] for c in CASES])
def test_field_errors_write_nothing(
    world: Any, label: str, url: str, payload: Callable[[Any], dict[str, Any]], field: str
) -> None:
    client = world.client("admin" if "use-cases" in url else "contributor_a")
    before = counts()
    assert_refused(client.post(url, payload(world), format="json"), 400, field)
    assert counts() == before


def test_invalid_transition_is_409_naming_status_and_the_allowed_targets(world: Any) -> None:
    mv = world.tree["a"]["model_version"]
    before = counts()
    response = world.client("contributor_a").post(
        f"/api/v1/model-versions/{mv.pk}/transition/", {"status": "deployed"}, format="json"
    )
    assert_refused(response, 409, "status")
    assert "allowed: in_review, retired" in response.json()["detail"]
    assert counts() == before


def test_status_cannot_be_set_by_patch(world: Any) -> None:
    mv = world.tree["a"]["model_version"]
    response = world.client("contributor_a").patch(
        f"/api/v1/model-versions/{mv.pk}/", {"status": "approved"}, format="json"
    )
    assert response.status_code == 200
    mv.refresh_from_db()
    assert mv.status == "registered"


def test_parent_cannot_be_moved_by_patch(world: Any) -> None:
    dv = world.tree["a"]["dataset_version"]
    other = world.tree["a"]["dataset"]
    from tests import factories as f

    elsewhere = f.dataset(world.uc_a)
    response = world.client("contributor_a").patch(
        f"/api/v1/dataset-versions/{dv.pk}/", {"dataset": elsewhere.pk}, format="json"
    )
    assert_refused(response, 400, "dataset")
    dv.refresh_from_db()
    assert dv.dataset_id == other.pk


def test_oversized_body_is_413_before_parsing(world: Any, settings: Any) -> None:
    settings.CHARTER_MAX_BODY_BYTES = 1000
    before = counts()
    response = world.client("contributor_a").post(
        "/api/v1/datasets/",
        {"use_case": world.uc_a.pk, "name": "big", "description": "x" * 5000},
        format="json",
    )
    assert response.status_code == 413
    assert "limit is 1000 bytes" in response.json()["detail"]
    assert counts() == before


def test_unsupported_media_type_is_415(world: Any) -> None:
    client: APIClient = world.client("contributor_a")
    response = client.post("/api/v1/datasets/", data="name=x", content_type="text/plain")
    assert response.status_code == 415


def test_contributors_cannot_approve_or_deploy_their_own_version(world: Any) -> None:
    mv = world.tree["a"]["model_version"]
    client = world.client("contributor_a")
    assert (
        client.post(
            f"/api/v1/model-versions/{mv.pk}/transition/", {"status": "in_review"}
        ).status_code
        == 200
    )
    response = client.post(f"/api/v1/model-versions/{mv.pk}/transition/", {"status": "approved"})
    assert response.status_code == 403
    assert "approval workflow" in response.json()["detail"]
    mv.refresh_from_db()
    assert mv.status == "in_review"


def test_renaming_a_model_version_through_the_api(world: Any) -> None:
    mv = world.tree["a"]["model_version"]
    response = world.client("contributor_a").patch(
        f"/api/v1/model-versions/{mv.pk}/", {"version": "renamed"}, format="json"
    )
    assert response.status_code == 200, response.json()
    mv.refresh_from_db()
    assert mv.version == "renamed"
