"""Lineage reports for auditors (issue 5, acceptance 3 in part): the signed package verifies
offline and any altered file fails; the ML-BOM validates against CycloneDX 1.6; reports are
only for those who may see the subject, and every build and download is audited."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from audits.models import AuditEvent, ReportJob
from lineage.reports.bom import build_bom, validate_bom
from lineage.reports.build import build_report
from lineage.reports.package import build_package
from portal.permissions import Access
from registry import services
from tests import factories as f
from tests.audits.helpers import rewrite_member, run_offline


@pytest.fixture
def lineage_world(world: Any) -> Any:
    """Model version A with an upstream raw dataset, an approval and two deployments."""
    tree = world.tree["a"]
    raw = f.dataset_version(tree["dataset"], version="raw-2026")
    services.update_dataset_version(Access.system(), tree["dataset_version"], derived_from=[raw])
    services.update_model_version(
        Access.system(),
        tree["model_version"],
        subgroup_metrics={"age<30": {"recall": 0.81}},
        limitations="Thin files.",
    )
    world.raw = raw
    return world


def _client(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def test_report_walks_from_raw_data_to_production(lineage_world: Any) -> None:
    mv = lineage_world.tree["a"]["model_version"]
    report = build_report(mv, Access(user=lineage_world.users["auditor"]))
    kinds = [(o["kind"], o["name"]) for o in report["objects"]]
    names = [n for _, n in kinds]
    assert str(lineage_world.raw) in names  # the upstream the training data came from
    assert names.index(str(lineage_world.raw)) < names.index(str(mv))
    assert ("use_case", lineage_world.uc_a.name) == kinds[-1]
    subject = next(o for o in report["objects"] if o["role"] == "subject")
    assert subject["facts"]["model_card"]["limitations"] == "Thin files."
    assert subject["facts"]["artifacts"][0]["signature"] in ("verified", "unsigned", "failed")
    assert subject["events"] and subject["events"][0]["hash"]
    assert any(o["kind"] == "deployment" for o in report["objects"])


def test_package_verifies_offline_and_any_altered_file_fails(
    lineage_world: Any, tmp_path: Path
) -> None:
    mv = lineage_world.tree["a"]["model_version"]
    steps: list[int] = []
    data, manifest = build_package(
        mv, Access(user=lineage_world.users["auditor"]), lambda pct, step: steps.append(pct)
    )
    assert steps[0] < steps[-1] == 100
    path = tmp_path / "report.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert archive.read("report.pdf").startswith(b"%PDF")
        assert json.loads(archive.read("report.json"))["subject"]["name"] == str(mv)
    assert set(manifest["files"]) == {
        "report.html",
        "report.pdf",
        "report.json",
        "objects.csv",
        "bom.cdx.json",
    }
    assert names == set(manifest["files"]) | {
        "manifest.json",
        "manifest.dsse.json",
        "portal_public_keys.pem",
    }
    proc = run_offline(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 files verified" in proc.stdout

    for member in sorted(manifest["files"]) + ["manifest.json"]:
        altered = tmp_path / f"altered-{member}.zip"
        altered.write_bytes(data)
        rewrite_member(altered, member, lambda b: b + b" ")
        proc = run_offline(altered)
        assert proc.returncode == 1, member
        assert member in proc.stdout or "signed manifest" in proc.stdout, proc.stdout

    # a file slipped in is refused too
    extra = tmp_path / "extra.zip"
    extra.write_bytes(data)
    with zipfile.ZipFile(extra, "a") as archive:
        archive.writestr("notes.txt", "added later")
    proc = run_offline(extra)
    assert proc.returncode == 1 and "notes.txt" in proc.stdout


def test_ml_bom_validates_against_cyclonedx_16(lineage_world: Any) -> None:
    mv = lineage_world.tree["a"]["model_version"]
    datasets = [(dv, "training") for dv in mv.training_datasets.all()]
    bom = build_bom(mv, datasets)
    assert validate_bom(bom) is None
    assert bom["specVersion"] == "1.6"
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["modelCard"]["considerations"]["technicalLimitations"] == ["Thin files."]
    slices = {
        m.get("slice") for m in model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    }
    assert "age<30" in slices
    assert [c["type"] for c in bom["components"]] == ["data"]
    # the validator is real: a malformed model card is refused
    model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = {"x": 1}
    assert validate_bom(bom) is not None


def test_report_pages_and_package_job_through_the_browser_views(
    lineage_world: Any, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    mv = lineage_world.tree["a"]["model_version"]
    auditor = _client(lineage_world, "auditor")
    base = f"/reports/model-version/{mv.pk}/"
    assert auditor.get(base).status_code == 200
    body = auditor.get(base + "?format=json").json()
    assert body["subject"]["id"] == str(mv.pk)
    csv_text = auditor.get(base + "?format=csv").content.decode()
    assert csv_text.splitlines()[0] == "kind,id,name,role,facts,audit_events"
    start = AuditEvent.objects.order_by("-seq").first().seq
    with django_capture_on_commit_callbacks(execute=True):  # the task is queued on commit
        response = auditor.post(base + "build/")
    assert response.status_code == 302
    job = ReportJob.objects.get()
    assert job.state == "done" and job.progress == 100  # eager Celery in tests
    assert auditor.get(f"/reports/jobs/{job.pk}/").status_code == 200
    download = auditor.get(f"/reports/jobs/{job.pk}/download/")
    data = b"".join(download.streaming_content)
    assert zipfile.ZipFile(io.BytesIO(data)).read("manifest.json")
    actions = list(
        AuditEvent.objects.filter(seq__gt=start).order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["export", "download"]


def test_reports_are_for_those_who_may_see_the_subject(lineage_world: Any) -> None:
    mv_b = lineage_world.tree["b"]["model_version"]
    outsider = _client(lineage_world, "contributor_a")
    for path in (
        f"/reports/model-version/{mv_b.pk}/",
        f"/reports/model-version/{mv_b.pk}/?format=json",
        f"/reports/deployment/{lineage_world.tree['b']['deployment'].pk}/",
        f"/reports/use-case/{lineage_world.uc_b.pk}/",
    ):
        assert outsider.get(path).status_code == 404, path
    assert outsider.post(f"/reports/model-version/{mv_b.pk}/build/").status_code == 404
    assert not ReportJob.objects.exists()
    # another user's job is not reachable either
    owner = _client(lineage_world, "auditor")
    owner.post(f"/reports/model-version/{lineage_world.tree['a']['model_version'].pk}/build/")
    job = ReportJob.objects.get()
    assert _client(lineage_world, "board").get(f"/reports/jobs/{job.pk}/").status_code == 404
