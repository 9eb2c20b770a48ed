"""Telemetry intake: every rejection names the problem and writes nothing; idempotency."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.monitoring import rig
from workers.models import PredictionRecord, ReferenceProfile, TelemetryBatch, WindowProfile


@pytest.fixture
def dep(world: Any) -> Any:
    rig.install_reference(world.tree["a"]["dataset_version"])
    return world.tree["a"]["deployment"]


def _nothing_written() -> None:
    assert TelemetryBatch.objects.count() == 0
    assert WindowProfile.objects.count() == 0
    assert PredictionRecord.objects.count() == 0


def _raw(client: Any, dep: Any, text: str, what: str = "telemetry") -> Any:
    return client.post(rig.telemetry_url(dep, what), text, content_type="application/json")


def test_accepted_batch_is_stored_queued_and_folded(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    with capture(execute=True):
        response = rig.post(client, dep, rig.rows(50, with_ids="p"), k="first")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["rows"] == 50 and body["idempotency_key"] == "first" and body["status"] == "queued"
    batch = TelemetryBatch.objects.get()
    assert batch.submitted_by == world.users["contributor_a"]
    assert batch.folded_at is not None and batch.payload is None  # folded, payload dropped
    window = WindowProfile.objects.get()
    assert window.rows == 50 and window.batches == 1
    assert PredictionRecord.objects.count() == 50


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda b: b["features"].update(bogus=[1] * 20), "features.bogus", "unknown feature"),
        (lambda b: b["features"].pop("region"), "features.region", "missing feature"),
        (lambda b: b["features"]["age"].__setitem__(3, "forty"), "features.age", "wrong type"),
        (lambda b: b["features"]["age"].__setitem__(4, True), "features.age", "wrong type"),
        (lambda b: b["features"]["region"].__setitem__(0, 7), "features.region", "wrong type"),
        (lambda b: b["features"]["income"].pop(), "features.income", "has 19 values"),
        (lambda b: b.update(predictions=[0.5] * 3), "predictions", "expected 20"),
        (lambda b: b.update(latency_ms=[-1.0] * 20), "latency_ms", "negative"),
        (lambda b: b.update(errors=-2), "errors", "non-negative"),
        (lambda b: b.update(errors=21), "errors", "21 errors"),
        (lambda b: b.update(prediction_ids=["x"] * 20), "prediction_ids", "duplicate"),
        (lambda b: b.update(colour="red"), "colour", "unknown field"),
        (lambda b: b.update(timestamp="yesterday"), "timestamp", "ISO 8601"),
        (lambda b: b.update(timestamp=rig.hours_ago(-2)), "timestamp", "future"),
        (lambda b: b.update(timestamp=rig.hours_ago(24 * 30)), "timestamp", "older than"),
        (lambda b: b.update(features={}), "features", "required"),
    ],
)
def test_bad_batches_are_refused_naming_the_field(
    world: Any, dep: Any, mutate: Any, field: str, words: str
) -> None:
    body = rig.rows(20)
    mutate(body)
    response = rig.post(world.client("contributor_a"), dep, body)
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert field in errors, errors
    assert words in " ".join(errors[field]), errors
    _nothing_written()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused_naming_feature_and_row(
    world: Any, dep: Any, literal: str
) -> None:
    body = rig.rows(10)
    text = json.dumps({"idempotency_key": rig.key(), **body})
    income = json.dumps(body["features"]["income"])
    patched = body["features"]["income"][:]
    patched[6] = "__X__"
    text = text.replace(income, json.dumps(patched).replace('"__X__"', literal))
    response = _raw(world.client("contributor_a"), dep, text)
    assert response.status_code == 400, response.json()
    (message,) = response.json()["errors"]["features.income"]
    assert "NaN or infinite" in message and "row 6" in message
    _nothing_written()


def test_nan_in_a_categorical_feature_and_in_predictions(world: Any, dep: Any) -> None:
    body = rig.rows(5)
    body["features"]["region"][2] = "__X__"
    body["predictions"][1] = "__Y__"
    text = json.dumps({"idempotency_key": "k", **body})
    text = text.replace('"__X__"', "NaN").replace('"__Y__"', "Infinity")
    response = _raw(world.client("contributor_a"), dep, text)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "NaN or infinite" in errors["features.region"][0]
    assert "NaN or infinite" in errors["predictions"][0]
    _nothing_written()


def test_a_null_is_a_missing_value_not_an_error(world: Any, dep: Any, capture: Any) -> None:
    body = rig.rows(10)
    body["features"]["income"][3] = None
    body["features"]["region"][4] = None
    with capture(execute=True):
        response = rig.post(world.client("contributor_a"), dep, body)
    assert response.status_code == 202
    profile = WindowProfile.objects.get().profile["features"]
    assert profile["income"]["nulls"] == 1 and profile["region"]["nulls"] == 1


def test_missing_idempotency_key_is_400(world: Any, dep: Any) -> None:
    response = world.client("contributor_a").post(
        rig.telemetry_url(dep), rig.rows(5), format="json"
    )
    assert response.status_code == 400
    assert "idempotency_key" in response.json()["errors"]
    bad = rig.post(world.client("contributor_a"), dep, rig.rows(5), k="has space")
    assert bad.status_code == 400 and "idempotency_key" in bad.json()["errors"]
    _nothing_written()


def test_idempotency_key_in_a_header(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    with capture(execute=True):
        first = client.post(
            rig.telemetry_url(dep), rig.rows(5), format="json", HTTP_IDEMPOTENCY_KEY="hdr-1"
        )
        again = client.post(
            rig.telemetry_url(dep), rig.rows(5), format="json", HTTP_IDEMPOTENCY_KEY="hdr-1"
        )
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert WindowProfile.objects.get().rows == 5


def test_retry_with_same_body_replays_and_never_doubles(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    body = rig.rows(30, with_ids="r")
    with capture(execute=True):
        first = rig.post(client, dep, body, k="same")
        second = rig.post(client, dep, body, k="same")
        third = rig.post(client, dep, body, k="same")
    assert first.status_code == second.status_code == third.status_code == 202
    assert first.json() == second.json() == third.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert TelemetryBatch.objects.count() == 1
    window = WindowProfile.objects.get()
    assert window.rows == 30 and window.batches == 1
    assert window.profile["features"]["age"]["count"] == 30


def test_same_key_with_a_different_body_is_409(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    with capture(execute=True):
        assert rig.post(client, dep, rig.rows(10, seed=1), k="dup").status_code == 202
        response = rig.post(client, dep, rig.rows(10, seed=2), k="dup")
    assert response.status_code == 409
    assert "idempotency_key" in response.json()["errors"]
    assert TelemetryBatch.objects.count() == 1
    assert WindowProfile.objects.get().rows == 10


def test_a_repeat_is_answered_as_first_even_where_a_new_batch_would_be_refused(
    world: Any, dep: Any, capture: Any, settings: Any
) -> None:
    """A repeat's answer is the first delivery's: not an error the same body would get now
    (rows over a lowered limit, the baseline gone), and 409 for another body all the same."""
    client = world.client("contributor_a")
    with capture(execute=True):
        first = rig.post(client, dep, rig.rows(12), k="kept")
    assert first.status_code == 202
    settings.CHARTER_TELEMETRY_MAX_ROWS = 10
    again = rig.post(client, dep, rig.rows(12), k="kept")
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = rig.post(client, dep, rig.rows(11, seed=5), k="kept")  # over the limit too
    assert other.status_code == 409 and "idempotency_key" in other.json()["errors"]
    ReferenceProfile.objects.update(status="failed")  # the deployment loses its baseline
    assert rig.post(client, dep, rig.rows(5), k="fresh").status_code == 409  # no baseline
    settings.CHARTER_TELEMETRY_MAX_ROWS = 50_000
    late = rig.post(client, dep, rig.rows(12), k="kept")
    assert late.status_code == 202 and late.json() == first.json()
    assert TelemetryBatch.objects.count() == 1


def test_keys_are_per_deployment(world: Any, dep: Any, capture: Any) -> None:
    other = rig.install_reference(world.tree["b"]["dataset_version"])
    assert other.status == "ready"
    with capture(execute=True):
        a = rig.post(world.client("admin"), dep, rig.rows(5), k="shared")
        b = rig.post(world.client("admin"), world.tree["b"]["deployment"], rig.rows(5), k="shared")
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_too_many_rows_is_413(world: Any, dep: Any, settings: Any) -> None:
    settings.CHARTER_TELEMETRY_MAX_ROWS = 10
    response = rig.post(world.client("contributor_a"), dep, rig.rows(11))
    assert response.status_code == 413
    assert "limit is 10" in response.json()["errors"]["features"][0]
    _nothing_written()


def test_too_large_body_is_413(world: Any, dep: Any, settings: Any) -> None:
    settings.CHARTER_TELEMETRY_MAX_BODY_BYTES = 2000
    response = rig.post(world.client("contributor_a"), dep, rig.rows(100))
    assert response.status_code == 413
    assert "limit is 2000 bytes" in response.json()["detail"]
    _nothing_written()


def test_unknown_deployment_and_invisible_deployment_are_404(world: Any, dep: Any) -> None:
    assert rig.post(world.client("admin"), type(dep)(pk=999999), rig.rows(5)).status_code == 404
    for who in ("outsider", "contributor_b"):
        response = rig.post(world.client(who), dep, rig.rows(5))
        assert response.status_code == 404, who
    _nothing_written()


def test_the_deployment_is_found_by_token_scope_and_rights_read_with_the_token(
    world: Any, dep: Any, capture: Any
) -> None:
    """Token callers' rights come with the token (the compiled deployment lookup); a token
    scoped elsewhere, an unknown id and an id past the column's range all answer 404."""
    from tests.helpers import service_account

    fleet = service_account("fleet-a", "contributor", world.uc_a, "contribute")
    other = service_account("fleet-b", "contributor", world.uc_b, "contribute")
    with capture(execute=True):
        assert rig.post(fleet.client, dep, rig.rows(5)).status_code == 202
    assert rig.post(other.client, dep, rig.rows(5)).status_code == 404
    for pk in (999999, 2**63, 2**70):
        assert rig.post(fleet.client, type(dep)(pk=pk), rig.rows(5)).status_code == 404, pk
        assert rig.post(world.client("admin"), type(dep)(pk=pk), rig.rows(5)).status_code == 404
    assert TelemetryBatch.objects.count() == 1


def test_a_viewer_may_not_post_telemetry(world: Any, dep: Any) -> None:
    response = rig.post(world.client("viewer_a"), dep, rig.rows(5))
    assert response.status_code == 403
    _nothing_written()


def test_unauthenticated_is_401(world: Any, dep: Any) -> None:
    from rest_framework.test import APIClient

    assert rig.post(APIClient(), dep, rig.rows(5)).status_code == 401


def test_no_reference_profile_is_409(world: Any) -> None:
    dep = world.tree["b"]["deployment"]
    response = rig.post(world.client("contributor_b"), dep, rig.rows(5))
    assert response.status_code == 409
    assert "reference profile" in response.json()["detail"]
    _nothing_written()


def test_labels_are_checked(world: Any, dep: Any) -> None:
    client = world.client("contributor_a")
    cases = [
        ({"prediction_ids": ["a", "b"], "labels": [1]}, "prediction_ids"),
        ({"prediction_ids": ["a"], "labels": [{"x": 1}]}, "labels"),
        ({"prediction_ids": ["a"]}, "labels"),
        ({"prediction_ids": ["a", "a"], "labels": [1, 0]}, "prediction_ids"),
    ]
    for body, field in cases:
        response = rig.post(client, dep, body, what="labels")
        assert response.status_code == 400, body
        assert field in response.json()["errors"], response.json()
    _nothing_written()


def test_client_profiles_are_checked(world: Any, dep: Any) -> None:
    from workers import services
    from workers.drift import build_reference_profile, fold, window_profile

    client = world.client("contributor_a")
    ref = services.inputs_of(services.reference_for(dep))
    body = rig.rows(50)
    good = fold(window_profile(ref), body["features"]).to_dict()
    wrong_edges = build_reference_profile(body["features"]).to_dict()
    cases = [
        ({"profile": {"schema_version": 1, "rows": 1}}, "profile"),
        ({"profile": wrong_edges}, "profile.features.age.edges"),
        ({"profile": {**good, "features": {**good["features"], "x": good["features"]["age"]}}},
         "profile.features.x"),
        ({"profile": good, "service": {"requests": 1}}, "service"),
    ]  # fmt: skip
    for body, field in cases:
        response = rig.post(client, dep, body, what="profiles")
        assert response.status_code == 400, response.json()
        assert field in response.json()["errors"], response.json()
    _nothing_written()


def test_intake_reads_each_thing_once_and_writes_the_batch_in_one_insert(
    world: Any, dep: Any
) -> None:
    """The key is looked up once, the monitoring config comes with the deployment, the
    reference's profile document is not re-read by a process that has parsed it, and the
    batch is one INSERT (its answer is stored with it, its id added when answering)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = world.client("contributor_a")
    assert rig.post(client, dep, rig.rows(5), k="warm").status_code == 202
    with CaptureQueriesContext(connection) as ctx:
        response = rig.post(client, dep, rig.rows(5), k="counted")
    assert response.status_code == 202, response.json()
    batch = TelemetryBatch.objects.get(idempotency_key="counted")
    assert response.json()["id"] == batch.pk and response.json()["status"] == "queued"
    sql = [q["sql"] for q in ctx.captured_queries]
    # a first delivery is not looked up: a repeat is caught by the batch's unique key
    assert not [s for s in sql if s.startswith('SELECT "workers_telemetrybatch"')]
    assert not [s for s in sql if s.startswith('UPDATE "workers_telemetrybatch"')]
    assert not [s for s in sql if s.startswith('SELECT "workers_monitoringconfig"')]
    refs = [s for s in sql if 'FROM "workers_referenceprofile"' in s]
    assert len(refs) == 1 and '"workers_referenceprofile"."profile"' not in refs[0]
    # a replay answers the same, id included
    again = rig.post(client, dep, rig.rows(5), k="counted")
    assert again.status_code == 202 and again.json() == response.json()
