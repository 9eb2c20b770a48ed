"""Folding: a window equals the fold of everything sent to it; files, profiles, labels;
reference profiles computed from uploads."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from audits.models import AuditEvent
from portal.permissions import Access
from tests import factories as f
from tests.monitoring import rig
from workers import performance, services
from workers.drift import DatasetProfile, ServiceMetrics, fold, window_profile
from workers.models import PredictionRecord, ReferenceProfile, TelemetryBatch, WindowProfile


@pytest.fixture
def dep(world: Any) -> Any:
    rig.install_reference(world.tree["a"]["dataset_version"])
    return world.tree["a"]["deployment"]


def _concat(bodies: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [v for b in bodies for v in b["features"][name]] for name in rig.FEATURES}


def _assert_window_is_fold_of(window: Any, dep: Any, bodies: list[dict[str, Any]]) -> None:
    got = DatasetProfile.from_dict(window.profile)
    expected = fold(
        window_profile(services.inputs_of(services.reference_for(dep))), _concat(bodies)
    )
    for name in rig.FEATURES:
        g, e = got[name], expected[name]
        assert (g.count, g.nulls, g.n) == (e.count, e.nulls, e.n), name
        assert g.values == e.values and g.other == e.other, name
        if g.numeric:
            assert np.array_equal(g.bin_counts, e.bin_counts), name
            assert np.allclose(g.bin_sums, e.bin_sums, rtol=1e-12), name
            assert g.mean == pytest.approx(e.mean, rel=1e-12)
            assert g.m2 == pytest.approx(e.m2, rel=1e-9)
            assert (g.min, g.max) == (e.min, e.max)


def test_window_equals_folding_the_concatenation(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    bodies = [rig.rows(n, seed=s) for n, s in ((120, 1), (75, 2), (300, 3), (1, 4))]
    bodies[1]["features"]["income"][5] = None
    stamp = rig.hours_ago(0.01)
    with capture(execute=True):
        for body in bodies:
            assert rig.post(client, dep, {**body, "timestamp": stamp}).status_code == 202
    window = WindowProfile.objects.get()
    assert window.rows == 496 and window.batches == 4
    _assert_window_is_fold_of(window, dep, bodies)
    service = ServiceMetrics.from_dict(window.service)
    assert service.requests == 496
    latencies = np.concatenate([b["latency_ms"] for b in bodies])
    p95 = float(np.quantile(latencies, 0.95, method="lower"))
    assert service.latency.quantile(0.95) == pytest.approx(p95, rel=0.01)


def test_one_task_folds_the_waiting_batches_of_its_window(world: Any, dep: Any) -> None:
    """A backlog of one window is folded by the first task that gets to it: one read and one
    write of the window for all; the other batches' tasks find theirs folded."""
    client = world.client("contributor_a")
    stamp = rig.hours_ago(0.01)
    bodies = [rig.rows(n, seed=s) for n, s in ((30, 1), (45, 2), (12, 3), (60, 4))]
    for body in bodies:  # stored, fold tasks not run (no on-commit here)
        assert rig.post(client, dep, {**body, "timestamp": stamp}).status_code == 202
    other = rig.post(client, dep, {**rig.rows(7), "timestamp": rig.hours_ago(5)})
    assert other.status_code == 202
    batches = list(TelemetryBatch.objects.order_by("pk"))
    assert services.fold_batch(batches[1].pk) == "folded"
    window = WindowProfile.objects.get()
    assert (window.rows, window.batches, window.version) == (147, 4, 1)
    _assert_window_is_fold_of(window, dep, bodies)
    for batch, body in zip(batches[:4], bodies, strict=True):
        batch.refresh_from_db()
        assert batch.folded_at is not None and batch.payload is None
        assert batch.result == {"window": window.pk, "rows": len(body["latency_ms"])}
        assert batch.response["status"] == "folded"
        assert services.fold_batch(batch.pk) == "already folded"
    assert ServiceMetrics.from_dict(window.service).requests == 147
    assert TelemetryBatch.objects.filter(folded_at__isnull=True).get() == batches[4]
    assert services.fold_batch(batches[4].pk) == "folded"
    assert sorted(WindowProfile.objects.values_list("rows", flat=True)) == [7, 147]


def test_a_bad_batch_in_a_group_undoes_the_group_not_the_others(world: Any, dep: Any) -> None:
    client = world.client("contributor_a")
    stamp = rig.hours_ago(0.01)
    for n in (5, 6, 7):
        rig.post(client, dep, {**rig.rows(n), "timestamp": stamp})
    first, bad, last = TelemetryBatch.objects.order_by("pk")
    bad.payload["features"]["age"] = ["x"] * 6
    bad.save()
    # the group of three fails: the task folds its own batch alone, then what waits in the
    # window (the group of the other two fails too: each alone, the bad one marked)
    assert services.fold_batch(first.pk) == "folded"
    assert not TelemetryBatch.objects.filter(folded_at__isnull=True).exists()
    bad.refresh_from_db()
    assert "error" in bad.result and bad.folded_at is not None
    assert services.fold_batch(bad.pk) == "already folded"
    assert services.fold_batch(last.pk) == "already folded"
    window = WindowProfile.objects.get()
    assert (window.rows, window.batches) == (12, 2)
    assert ServiceMetrics.from_dict(window.service).requests == 12


def test_batches_go_to_the_window_of_their_timestamp(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    with capture(execute=True):
        for hours, n in ((5.2, 10), (5.1, 20), (2.5, 7), (0.0, 3)):
            rig.post(client, dep, {**rig.rows(n), "timestamp": rig.hours_ago(hours)})
    windows = list(WindowProfile.objects.order_by("start").values_list("rows", flat=True))
    assert sum(windows) == 40
    assert len(windows) in (3, 4)  # 5.2 h and 5.1 h ago share a window unless an hour starts
    for w in WindowProfile.objects.all():
        assert (w.end - w.start).total_seconds() == 3600 and w.start.minute == 0


def test_window_length_comes_from_the_monitoring_config(world: Any, dep: Any, capture: Any) -> None:
    services.update_monitoring_config(Access.system(), dep, window_seconds=600)
    with capture(execute=True):
        rig.post(world.client("contributor_a"), dep, rig.rows(5))
    w = WindowProfile.objects.get()
    assert (w.end - w.start).total_seconds() == 600


def test_a_fold_that_runs_twice_counts_once(world: Any, dep: Any, capture: Any) -> None:
    with capture(execute=True):
        rig.post(world.client("contributor_a"), dep, rig.rows(40))
    batch = TelemetryBatch.objects.get()
    assert services.fold_batch(batch.pk) == "already folded"
    from workers.tasks import fold_telemetry_batch

    fold_telemetry_batch.apply(args=[batch.pk])
    assert WindowProfile.objects.get().rows == 40


def test_client_profiles_merge_into_the_window(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    ref = services.inputs_of(services.reference_for(dep))
    a, b = rig.rows(100, seed=5), rig.rows(60, seed=6)
    profile = fold(window_profile(ref, sample_size=0), b["features"]).to_dict()
    service = ServiceMetrics().observe(b["latency_ms"], 3).to_dict()
    with capture(execute=True):
        assert rig.post(client, dep, a).status_code == 202
        response = rig.post(client, dep, {"profile": profile, "service": service}, what="profiles")
    assert response.status_code == 202, response.json()
    assert response.json()["kind"] == "profile"
    window = WindowProfile.objects.get()
    assert window.rows == 160
    got = DatasetProfile.from_dict(window.profile)
    expected = fold(window_profile(ref), _concat([a, b]))
    assert np.array_equal(got["age"].bin_counts, expected["age"].bin_counts)
    assert got["region"].values == expected["region"].values
    merged = ServiceMetrics.from_dict(window.service)
    assert (merged.requests, merged.errors) == (160, 3)


def test_csv_and_parquet_uploads(world: Any, dep: Any, capture: Any) -> None:
    client = world.client("contributor_a")
    body = rig.rows(80, seed=9, with_ids="f")
    table = pa.table(
        {
            **body["features"],
            "prediction": body["predictions"],
            "prediction_id": body["prediction_ids"],
            "latency_ms": body["latency_ms"],
        }
    )
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    csv_bytes = io.BytesIO()
    pacsv.write_csv(table.drop_columns(["prediction_id"]), csv_bytes)
    url = rig.telemetry_url(dep)
    with capture(execute=True):
        r1 = client.post(
            url,
            {
                "idempotency_key": "pq-1",
                "file": SimpleUploadedFile("b.parquet", parquet.getvalue()),
            },
            format="multipart",
        )
        r2 = client.post(
            url,
            {"idempotency_key": "csv-1", "file": SimpleUploadedFile("b.csv", csv_bytes.getvalue())},
            format="multipart",
        )
    assert r1.status_code == 202, r1.json()
    assert r2.status_code == 202, r2.json()
    assert r1.json()["kind"] == "file" and r1.json()["rows"] == 80
    window = WindowProfile.objects.get()
    assert window.rows == 160
    got = DatasetProfile.from_dict(window.profile)
    expected = fold(
        window_profile(services.inputs_of(services.reference_for(dep))),
        _concat([body, body]),
    )
    assert np.array_equal(got["income"].bin_counts, expected["income"].bin_counts)
    assert got["region"].values == expected["region"].values
    assert PredictionRecord.objects.count() == 80
    assert not TelemetryBatch.objects.exclude(file="").exists()  # files dropped after folding


def test_bad_uploads(world: Any, dep: Any, settings: Any) -> None:
    client = world.client("contributor_a")
    url = rig.telemetry_url(dep)
    bad_csv = b"age,income,colour\n1,2,red\n"
    inf_csv = b"age,income,region\n1,inf,north\n2,3,south\n"
    cases = [
        (bad_csv, "features.colour"),
        (inf_csv, "features.income"),
        (b"\x00\x01garbage", "file"),
    ]
    for content, field in cases:
        response = client.post(
            url,
            {"idempotency_key": rig.key(), "file": SimpleUploadedFile("x.csv", content)},
            format="multipart",
        )
        assert response.status_code == 400, response.json()
        assert field in response.json()["errors"], response.json()
    settings.CHARTER_TELEMETRY_MAX_UPLOAD_BYTES = 10
    response = client.post(
        url,
        {"idempotency_key": rig.key(), "file": SimpleUploadedFile("x.csv", inf_csv)},
        format="multipart",
    )
    assert response.status_code == 413
    assert TelemetryBatch.objects.count() == 0


def test_labels_join_predictions_and_give_accuracy_and_auc(
    world: Any, dep: Any, capture: Any
) -> None:
    client = world.client("contributor_a")
    body = rig.rows(200, seed=3, with_ids="q")
    scores = body["predictions"]
    rng = np.random.default_rng(0)
    labels = [bool(rng.uniform() < s) for s in scores]  # informative scores
    with capture(execute=True):
        rig.post(client, dep, body)
        response = rig.post(
            client,
            dep,
            {
                "prediction_ids": [*body["prediction_ids"][:150], "nope"],
                "labels": [*labels[:150], 1],
            },
            what="labels",
        )
    assert response.status_code == 202, response.json()
    batch = TelemetryBatch.objects.get(kind="labels")
    assert batch.result == {"matched": 150, "unmatched": 1}
    assert PredictionRecord.objects.count() == 50  # the labelled ones are gone
    summary = performance.summary(WindowProfile.objects.get().performance)
    s, y = np.array(scores[:150]), np.array(labels[:150])
    assert summary["labelled"] == 150
    assert summary["accuracy"] == pytest.approx(np.mean((s >= 0.5) == y))
    from scipy.stats import mannwhitneyu

    exact_auc = mannwhitneyu(s[y], s[~y]).statistic / (y.sum() * (~y).sum())
    assert abs(summary["auc"] - exact_auc) <= summary["auc_error_bound"] + 1e-12
    with capture(execute=True):  # the same labels again: nothing left to join
        rig.post(
            client,
            dep,
            {"prediction_ids": body["prediction_ids"][:10], "labels": labels[:10]},
            what="labels",
        )
    assert performance.summary(WindowProfile.objects.get().performance)["labelled"] == 150


def test_reference_profile_posted_through_the_api_is_audited(world: Any) -> None:
    from workers.drift import build_reference_profile

    dv = world.tree["b"]["dataset_version"]
    url = f"/api/v1/dataset-versions/{dv.pk}/reference-profile/"
    profile = build_reference_profile(rig.reference_columns(300)).to_dict()
    client = world.client("contributor_b")
    response = client.post(url, {"profile": profile, "prediction_column": "score"}, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "ready" and data["source"] == "posted"
    assert [f["name"] for f in data["features"]] == ["age", "income", "region"]
    event = AuditEvent.objects.filter(object_type="workers.referenceprofile").get()
    assert event.action == "create" and event.changes["after"]["sha256"] == data["sha256"]
    assert client.get(url).json()["rows"] == 300
    assert world.client("contributor_a").get(url).status_code == 404
    assert (
        world.client("viewer_a").post(url, {"profile": profile}, format="json").status_code == 404
    )
    bad = client.post(url, {"profile": {**profile, "rows": -1}}, format="json")
    assert bad.status_code == 400 and "profile" in bad.json()["errors"]
    bad = client.post(url, {"profile": profile, "prediction_column": "nope"}, format="json")
    assert bad.status_code == 400 and "prediction_column" in bad.json()["errors"]


def test_reference_profile_computed_from_the_uploaded_file(world: Any, capture: Any) -> None:
    dv = f.dataset_version(
        world.tree["a"]["dataset"], file=ContentFile(b"a,b,label\n1,x,0\n2,y,1\n3,x,1\n", "d.csv")
    )
    url = f"/api/v1/dataset-versions/{dv.pk}/reference-profile/"
    client = world.client("contributor_a")
    with capture(execute=True):
        response = client.post(url, {"compute": True, "label_column": "label"}, format="json")
    assert response.status_code == 202, response.json()
    ref = ReferenceProfile.objects.get(dataset_version=dv)
    assert ref.status == "ready", ref.error
    assert ref.feature_names == ["a", "b"] and ref.rows == 3
    events = AuditEvent.objects.filter(object_type="workers.referenceprofile", object_id=ref.pk)
    assert [e.action for e in events.order_by("seq")] == ["create", "update"]
    assert events.order_by("seq").last().channel == "task"
    no_file = world.tree["a"]["dataset_version"]
    response = client.post(
        f"/api/v1/dataset-versions/{no_file.pk}/reference-profile/",
        {"compute": True},
        format="json",
    )
    assert response.status_code == 400 and "file" in response.json()["errors"]


def test_a_baseline_in_use_cannot_be_replaced(world: Any, dep: Any, capture: Any) -> None:
    with capture(execute=True):
        rig.post(world.client("contributor_a"), dep, rig.rows(5))
    dv = world.tree["a"]["dataset_version"]
    response = world.client("contributor_a").post(
        f"/api/v1/dataset-versions/{dv.pk}/reference-profile/",
        {"profile": services.reference_for(dep).profile},
        format="json",
    )
    assert response.status_code == 409


def test_pruning_keeps_windows_and_drops_old_batches(world: Any, dep: Any, capture: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    with capture(execute=True):
        rig.post(world.client("contributor_a"), dep, rig.rows(5, with_ids="z"))
    later = timezone.now() + timedelta(days=60)
    assert services.prune(later) == {"batches": 1, "predictions": 5}
    assert WindowProfile.objects.get().rows == 5


def test_stragglers_are_folded(world: Any, dep: Any) -> None:
    """A batch whose task was lost (never queued here: no on-commit run) is picked up."""
    rig.post(world.client("contributor_a"), dep, rig.rows(5))
    assert WindowProfile.objects.count() == 0
    assert services.fold_stragglers(older_than_s=-5) == 1
    assert WindowProfile.objects.get().rows == 5


def test_a_batch_that_cannot_be_folded_is_marked_not_retried_forever(world: Any, dep: Any) -> None:
    rig.post(world.client("contributor_a"), dep, rig.rows(5))  # stored, fold not run
    batch = TelemetryBatch.objects.get()
    batch.payload["features"]["age"] = ["not", "numbers", "at", "all", "!"]
    batch.save()
    assert services.fold_batch(batch.pk) == "failed"
    batch.refresh_from_db()
    assert "error" in batch.result and batch.folded_at is not None
    assert WindowProfile.objects.count() == 0  # nothing half-written
    assert services.fold_stragglers(older_than_s=-5) == 0


def test_a_task_leaves_what_exceeds_its_share_to_a_task_it_queues(
    world: Any, dep: Any, monkeypatch: Any
) -> None:
    """A window with more waiting batches than one task folds (MAX_GROUPS_PER_TASK groups)
    gets another fold queued for the rest, not left to the straggler sweep."""
    from workers import foldclaims

    client = world.client("contributor_a")
    stamp = rig.hours_ago(0.01)
    for n in range(1, 7):  # six batches, their folds not queued (nothing commits here)
        rig.post(client, dep, {**rig.rows(n), "timestamp": stamp})
    monkeypatch.setattr(services, "FOLD_GROUP", 2)
    monkeypatch.setattr(services, "MAX_GROUPS_PER_TASK", 1)
    queued = []
    monkeypatch.setattr(services, "queue_fold", lambda batch: queued.append(batch.pk))
    foldclaims.forget_all()
    first = TelemetryBatch.objects.order_by("pk").first()
    assert services.fold_batch(first.pk) == "folded"
    waiting = list(
        TelemetryBatch.objects.filter(folded_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    assert len(waiting) == 2  # its own group of two and one more group of two
    assert queued == waiting[:1]  # the oldest of the rest, whose task folds both
    assert services.fold_batch(waiting[0]) == "folded"
    window = WindowProfile.objects.get()
    assert (window.rows, window.batches) == (21, 6)
    assert queued == waiting[:1]  # nothing left over: no further fold queued
