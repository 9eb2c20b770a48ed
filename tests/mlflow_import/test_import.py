"""Import from a real MLflow store: what maps where, idempotency, dry runs, refusals."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from audits.models import AuditEvent
from portal.permissions import Access
from registry.mlflow_import import import_mlflow, redact
from registry.models import Artifact, Dataset, DatasetVersion, Model, ModelVersion
from tests import factories as f
from tests.mlflow_import.store import SHA_TAGGED, Store

MODELS = {"credit-scorer": 4, "fraud-detector": 3, "churn": 3}


def _head() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def _version(model: str, number: int) -> ModelVersion:
    return ModelVersion.objects.get(
        model__name=model, parameters__mlflow__model=model, parameters__mlflow__version=number
    )


def _files_digest(directory: Path) -> tuple[str, int]:
    """The manifest digest, computed here independently of the importer."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    manifest = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(directory).as_posix()}\n"
        for p in files
    )
    return hashlib.sha256(manifest.encode()).hexdigest(), sum(p.stat().st_size for p in files)


def test_import_maps_models_versions_runs_datasets_and_artifacts(
    world: Any, mlflow_store: Store
) -> None:
    uc = world.uc_a
    before_models = Model.objects.filter(use_case=uc).count()
    start = _head()
    report = import_mlflow(Access.system(), mlflow_store.uri, use_case=uc)

    assert report.errors == []
    assert report.counts() == {
        "models": {"created": 3},
        "versions": {"created": 10},
        "datasets": {"created": 7},
    }
    assert Model.objects.filter(use_case=uc).count() == before_models + 3
    for name, n in MODELS.items():
        model = Model.objects.get(use_case=uc, name=name)
        assert model.description == f"{name} (from MLflow)"
        assert model.versions.count() == n

    # versions: numbers (or the charter.version tag), params, metrics, commit, identity
    v1 = _version("credit-scorer", 1)
    assert v1.version == "1" and v1.use_case_id == uc.pk
    assert v1.parameters["lr"] == "0.1" and v1.parameters["depth"] == "3"
    assert v1.parameters["mlflow"] == {
        "model": "credit-scorer",
        "version": 1,
        "run_id": mlflow_store.run_ids[("credit-scorer", 1)],
        "source": f"runs:/{mlflow_store.run_ids[('credit-scorer', 1)]}/model",
    }
    assert v1.metrics == {"auc": 0.81, "accuracy": 0.77}
    assert v1.environment["mlflow.runName"] == "credit-scorer-1"
    v2 = _version("credit-scorer", 2)
    assert v2.code_commit == "1a2b3c4"
    assert v2.code_repository == "https://git.example.org/ml/models"
    v4 = _version("credit-scorer", 4)
    assert v4.metrics == {"auc": 0.87}, "NaN is not a metric Charter stores"
    assert any("accuracy" in s["what"] and "finite" in s["why"] for s in report.not_mapped)
    assert _version("churn", 2).version == "2025.10"

    # datasets: one Charter dataset per MLflow dataset name, one version per digest
    for name, digests in mlflow_store.datasets.items():
        dataset = Dataset.objects.get(use_case=uc, name=name)
        assert set(dataset.versions.values_list("version", flat=True)) == digests
    train = DatasetVersion.objects.get(dataset__name="credit-scorer-train", row_count=120)
    assert train.uri == "s3://data/credit-scorer/train-120.parquet"
    assert [c["name"] for c in train.schema] == ["age", "income", "debt", "label"]
    valid = DatasetVersion.objects.get(dataset__name="credit-valid")
    assert valid.uri == "s3://data/credit/valid.npy"

    # links by context: training / validation ("eval" counts as validation)
    assert list(v1.training_datasets.all()) == [train]
    assert list(v1.validation_datasets.all()) == [valid]
    v3 = _version("credit-scorer", 3)
    assert v3.training_datasets.get().row_count == 150
    churn3 = _version("churn", 3)
    assert churn3.validation_datasets.count() == 1 and churn3.training_datasets.count() == 0
    fraud = [_version("fraud-detector", n) for n in (1, 2, 3)]
    assert len({v.training_datasets.get().pk for v in fraud}) == 1, "same digest, one version"

    # artifacts: digest computed over local files, taken from a tag, or not recorded
    art1 = Artifact.objects.get(model_version=v1)
    run_dir = mlflow_store.root / "art" / mlflow_store.run_ids[("credit-scorer", 1)]
    model_dir = next(run_dir.rglob("model"))
    assert (art1.sha256, art1.size_bytes) == _files_digest(model_dir)
    assert art1.uri.endswith("/artifacts/model") and art1.name == "model"
    assert not art1.attestations.exists(), "recorded unsigned"
    logged = Artifact.objects.get(model_version=v3)  # an MLflow 3 logged model (models:/m-…)
    assert logged.name.startswith("m-") and (logged.sha256, logged.size_bytes) == _files_digest(
        Path(logged.uri)
    )
    tagged = Artifact.objects.get(model_version=fraud[2])
    assert (tagged.sha256, tagged.size_bytes, tagged.uri) == (
        SHA_TAGGED,
        4096,
        "s3://models/fraud/3",
    )
    assert not Artifact.objects.filter(model_version=_version("churn", 1)).exists()
    churn1 = next(r for r in report.versions if r["model"] == "churn" and r["mlflow_version"] == 1)
    assert churn1["artifact"] == "not recorded"
    assert any("no digest" in n for n in churn1["notes"])
    assert (
        Artifact.objects.filter(model_version__model__use_case=uc, uri__contains="art").count() == 8
    )

    # what has no place in Charter is reported
    whats = " | ".join(f"{s['what']} => {s['why']}" for s in report.not_mapped)
    for expected in (
        "alias 'champion' → credit-scorer v3",
        "alias 'challenger' → credit-scorer v4",
        "alias 'prod' → churn v2",
        "tag team='risk' of registered model credit-scorer",
        "tag owner='ml-team' of churn v2",
        "description of churn v3",
    ):
        assert expected in whats

    # every write is an audit event of the registry service layer
    events = AuditEvent.objects.filter(seq__gt=start)
    assert report.audit_events == events.count() == 3 + 4 + 7 + 10 + 9
    assert set(events.values_list("action", flat=True)) == {"create"}
    assert set(events.values_list("object_type", flat=True)) == {
        "registry.model",
        "registry.dataset",
        "registry.datasetversion",
        "registry.modelversion",
        "registry.artifact",
    }


def test_a_second_import_changes_nothing(world: Any, mlflow_store: Store) -> None:
    first = import_mlflow(Access.system(), mlflow_store.uri, use_case=world.uc_a)
    assert first.audit_events > 0
    counts = (
        ModelVersion.objects.count(),
        DatasetVersion.objects.count(),
        Artifact.objects.count(),
    )
    start = _head()
    second = import_mlflow(Access.system(), mlflow_store.uri, use_case=world.uc_a)
    assert _head() == start, "no new audit events"
    assert second.audit_events == 0 and not second.changed
    assert second.counts() == {
        "models": {"unchanged": 3},
        "versions": {"unchanged": 10},
        "datasets": {"unchanged": 7},
    }
    assert counts == (
        ModelVersion.objects.count(),
        DatasetVersion.objects.count(),
        Artifact.objects.count(),
    )


def test_what_charter_adds_survives_a_reimport(world: Any, mlflow_store: Store) -> None:
    from registry import services

    import_mlflow(Access.system(), mlflow_store.uri, use_case=world.uc_a)
    v1 = _version("credit-scorer", 1)
    extra = f.dataset_version(f.dataset(world.uc_a))
    services.update_model_version(
        Access.system(),
        v1,
        metrics={**v1.metrics, "bias_gap": 0.02},
        test_datasets=[extra],
        intended_use="Rank applications for review.",
    )
    start = _head()
    import_mlflow(Access.system(), mlflow_store.uri, use_case=world.uc_a)
    assert _head() == start
    v1.refresh_from_db()
    assert v1.metrics["bias_gap"] == 0.02 and list(v1.test_datasets.all()) == [extra]


def test_dry_run_reports_and_saves_nothing(world: Any, mlflow_store: Store) -> None:
    counts = (Model.objects.count(), ModelVersion.objects.count(), Dataset.objects.count())
    start = _head()
    report = import_mlflow(Access.system(), mlflow_store.uri, use_case=world.uc_a, dry_run=True)
    assert report.dry_run and report.counts()["versions"] == {"created": 10}
    assert report.audit_events == 33, "what a real run would write"
    assert all(row["id"] is None for row in report.versions)
    assert _head() == start
    assert counts == (Model.objects.count(), ModelVersion.objects.count(), Dataset.objects.count())
    assert "dry run" in report.summary()


def test_a_charter_version_of_the_same_name_is_left_alone(world: Any, mlflow_store: Store) -> None:
    from registry import services

    model = services.create_model(Access.system(), use_case=world.uc_a, name="credit-scorer")
    mine = f.model_version(model, version="1", metrics={"auc": 0.5})
    report = import_mlflow(Access.system(), mlflow_store.uri, use_case=world.uc_a)
    mine.refresh_from_db()
    assert mine.metrics == {"auc": 0.5} and "mlflow" not in mine.parameters
    assert model.versions.count() == 4  # theirs 2..4 beside mine
    assert any(
        s["what"] == "credit-scorer v1" and "not imported from MLflow" in s["why"]
        for s in report.not_mapped
    )
    assert report.counts()["models"] == {"created": 2, "updated": 1}  # its description


def test_without_a_use_case_nothing_is_imported_and_it_says_why(
    world: Any, mlflow_store: Store
) -> None:
    report = import_mlflow(Access.system(), mlflow_store.uri)
    assert report.versions == [] and report.audit_events == 0
    assert {s["what"] for s in report.not_mapped} == {f"registered model {name}" for name in MODELS}
    assert all("charter.use_case" in s["why"] for s in report.not_mapped)


def test_importing_needs_contribute_rights(world: Any, mlflow_store: Store) -> None:
    with pytest.raises(PermissionDenied):
        import_mlflow(Access(world.users["contributor_b"]), mlflow_store.uri, use_case=world.uc_a)
    report = import_mlflow(
        Access(world.users["contributor_a"]), mlflow_store.uri, use_case=world.uc_a
    )
    assert report.counts()["versions"] == {"created": 10}
    assert (
        ModelVersion.objects.filter(
            parameters__mlflow__model="churn", registered_by=world.users["contributor_a"]
        ).count()
        == 3
    )


def test_the_use_case_can_come_from_a_registered_model_tag(world: Any, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'tagged.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("t", artifact_location=str(tmp_path / "art"))
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "rmse", 1.25)
    client.log_text(run.info.run_id, "w", "model/w.txt")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("by-name", tags={"charter.use_case": world.uc_b.name})
    client.create_registered_model("by-id", tags={"charter.use_case": str(world.uc_a.pk)})
    client.create_registered_model("nowhere", tags={"charter.use_case": "No such use case"})
    for name in ("by-name", "by-id", "nowhere"):
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    assert mlflow.get_tracking_uri() != uri

    report = import_mlflow(Access.system(), uri)
    assert Model.objects.get(name="by-name").use_case_id == world.uc_b.pk
    assert Model.objects.get(name="by-id").use_case_id == world.uc_a.pk
    assert not Model.objects.filter(name="nowhere").exists()
    assert any("names no use case" in s["why"] for s in report.not_mapped)
    version = ModelVersion.objects.get(model__name="by-id")
    assert version.parameters["alpha"] == "0.5" and math.isclose(version.metrics["rmse"], 1.25)


def test_passwords_never_reach_the_report() -> None:
    assert (
        redact("postgresql://mlflow:s3cret@db:5432/mlflow")
        == "postgresql://mlflow:***@db:5432/mlflow"
    )
    assert redact("http://mlflow:5000") == "http://mlflow:5000"
