"""The client and the ``charter`` command against a live Charter (pytest-django's live
server on the test database): a pipeline run end to end with a service-account token,
board members deciding through the API with their own tokens, the CLI's exit codes, field
errors and pagination."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from charter_client import (
    BadRequest,
    Client,
    Conflict,
    NotFound,
    TooLarge,
    Unauthorized,
    generate_key,
    key_id,
    verify_envelope,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Group

from approvals import services as approvals
from portal import roles
from portal.permissions import Access
from portal.services import create_service_account, grant_access, issue_token
from registry.models import Artifact, Attestation, DatasetVersion, Deployment
from tests import factories as f
from tests.approvals.rig import CARD, SUBGROUPS, make_version
from tests.client.conftest import CLIENT_SRC

REPO = CLIENT_SRC.parents[1]
SYSTEM = Access.system()


@dataclass
class Portal:
    url: str
    uc: Any
    dataset: Any
    model: Any
    pipeline: Any
    token: str
    reviewers: dict[str, str]  # name -> API token


def _portal(live_server: Any, *, risk_tier: str = "high") -> Portal:
    uc = f.use_case(
        name=f"Credit scoring {f.next_n()}",
        risk_tier=risk_tier,
        risk_rationale="Decides on credit.",
    )
    account = create_service_account(
        SYSTEM,
        username=f"training-pipeline-{f.next_n()}",
        groups=[Group.objects.get(name=roles.CONTRIBUTOR)],
    )
    grant_access(SYSTEM, uc, account.user, "contribute")
    _, token = issue_token(SYSTEM, user=account.user, name="ci", use_cases=[uc])
    reviewers = {}
    for name, role in (
        ("board1", roles.BOARD),
        ("board2", roles.BOARD),
        ("risk", roles.RISK_OFFICER),
    ):
        user = f.user(roles=(role,))
        reviewers[name] = issue_token(SYSTEM, user=user, name="review")[1]
    return Portal(
        live_server.url,
        uc,
        f.dataset(uc, name="applications"),
        f.model(uc, name="scorer"),
        account.user,
        token,
        reviewers,
    )


@pytest.mark.django_db(transaction=True)
def test_pipeline_run_end_to_end(
    live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _portal(live_server)
    monkeypatch.setenv("CHARTER_URL", p.url)
    monkeypatch.setenv("CHARTER_TOKEN", p.token)
    charter = Client(backoff=0.05)  # URL and token from the environment

    # 1. the training data: digest, rows and schema computed locally, the file streamed up
    train = tmp_path / "train.csv"
    train.write_text(
        "age,income,region\n"
        + "".join(f"{20 + i % 50},{1000 + i * 3.5},r{i % 4}\n" for i in range(300))
    )
    dv = charter.register_dataset_version(
        p.dataset.pk, "2025-10", train, motivation="Applications 2024-25.", license="internal"
    )
    assert dv["sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()
    assert dv["row_count"] == 300 and dv["size_bytes"] == train.stat().st_size
    assert dv["schema"] == [
        {"name": "age", "type": "integer"},
        {"name": "income", "type": "number"},
        {"name": "region", "type": "string"},
    ]
    stored = DatasetVersion.objects.get(pk=dv["id"])
    assert stored.file and stored.summary_status == "ready"  # the worker agreed
    assert stored.sha256 == dv["sha256"] and stored.row_count == 300

    # 2. the model version with its card, metrics and data links
    mv = charter.register_model_version(
        p.model.pk,
        "2.0.0",
        metrics={"auc": 0.91, "recall": 0.86},
        subgroup_metrics=SUBGROUPS,
        training_datasets=[dv["id"]],
        code_repository="https://git.example.org/ml/credit",
        code_commit="9fceb02",
        parameters={"max_depth": 6},
        **CARD,
    )
    assert mv["training_datasets"] == [dv["id"]] and mv["registered_by"] == p.pipeline.username

    # 3. the pipeline's key, and the artifact with a signed in-toto statement
    private_pem, public_pem = generate_key()
    key = charter.register_signing_key(public_pem, "ci pipeline")
    assert key["key_id"] == key_id(public_pem) and key["kind"] == "pipeline"
    weights = tmp_path / "model.onnx"
    weights.write_bytes(os.urandom(4096))
    art = charter.upload_artifact(
        mv["id"], weights, "model.onnx", "s3://models/scorer/2.0.0/model.onnx", key=private_pem
    )
    assert art["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert art["signature_status"] == "verified"
    (brief,) = art["attestations"]
    assert brief["verdict"] == "verified" and brief["signer_key_id"] == key["key_id"]
    att = Attestation.objects.get(artifact_id=art["id"])
    assert att.verdict == Attestation.Verdict.VERIFIED and not att.portal_signed
    assert att.subject_sha256 == art["sha256"]

    # 4. evidence, signed too
    for kind in ("bias_evaluation", "validation_report"):
        ev = charter.add_evidence(
            kind,
            f"{kind} 2.0.0",
            model_version=mv["id"],
            data={"recall_by_age": SUBGROUPS},
            key=private_pem,
        )
        assert ev["signature_status"] == "verified"

    # 5. production is gated: no deployment before an approval
    with pytest.raises(Conflict) as refused:
        charter.record_deployment(mv["id"], "production")
    assert refused.value.status == 409 and refused.value.errors
    assert not Deployment.objects.filter(model_version_id=mv["id"]).exists()

    # 6. request approval; the board and the risk officer decide with their own tokens
    #    while the pipeline waits
    req = charter.request_approval(mv["id"], "production", summary="Quarterly retrain.")
    assert req["state"] in ("submitted", "in_review")
    assert all(c["passed"] for c in req["check_results"]), req["check_results"]
    states: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            charter.wait_for_approval,
            req["id"],
            120,
            0.2,
            on_poll=lambda r: states.append(r["state"]),
        )
        for name in ("board1", "board2", "risk"):
            reviewer = Client(p.url, p.reviewers[name])
            decision = reviewer.decide(req["id"], "approve", f"{name}: fine")
            assert decision["verdict"] == "approve"
        final = waiting.result(timeout=120)
    assert final["state"] == "approved" and final["blocking"] == []
    assert len(final["decisions"]) == 3 and states[-1] == "approved"

    # the portal's signed approval covers the artifact and verifies offline
    envelope = charter.get(f"approval-requests/{req['id']}/attestation/")
    statement = verify_envelope(envelope, charter.portal_key()["public_key_pem"])
    assert {s["digest"]["sha256"] for s in statement["subject"]} == {art["sha256"]}

    # 7. now the deployment goes through
    dep = charter.record_deployment(
        mv["id"], "production", region="eu-west-1", endpoint="https://score.example.org"
    )
    assert dep["environment"] == "production" and dep["released_by"] == p.pipeline.username


def _cli(portal: Portal, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(CLIENT_SRC),
        "CHARTER_URL": portal.url,
        "CHARTER_TOKEN": token or portal.token,
    }
    return subprocess.run(
        [sys.executable, "-m", "charter_client", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=CLIENT_SRC,
    )


@pytest.mark.django_db(transaction=True)
def test_cli_approval_wait_exit_codes(live_server: Any) -> None:
    p = _portal(live_server, risk_tier="minimal")  # one board approval
    board = f.user(roles=(roles.BOARD,))
    contributor = Access(user=p.pipeline)
    requests = {}
    for name in ("approved", "rejected", "open"):
        mv, _ = make_version(p.uc, p.pipeline, model=p.model)
        requests[name] = approvals.create_request(contributor, model_version=mv)
    approvals.decide(Access(user=board), requests["approved"], verdict="approve", comment="ok")
    approvals.decide(Access(user=board), requests["rejected"], verdict="reject", comment="no")

    done = _cli(p, "approval", "wait", "--request", str(requests["approved"].pk), "--timeout", "1h")
    assert done.returncode == 0, done.stderr
    assert f"approval request {requests['approved'].pk}: approved" in done.stdout

    as_json = _cli(p, "--json", "approval", "wait", "--request", str(requests["approved"].pk))
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["state"] == "approved"

    rejected = _cli(p, "approval", "wait", "--request", str(requests["rejected"].pk))
    assert rejected.returncode == 2, rejected.stderr
    assert "rejected" in rejected.stdout

    waited = _cli(
        p,
        "approval",
        "wait",
        "--request",
        str(requests["open"].pk),
        "--timeout",
        "1s",
        "--poll",
        "0.2s",
    )
    assert waited.returncode == 3, waited.stderr
    assert "still submitted" in waited.stderr or "still in_review" in waited.stderr

    missing = _cli(p, "approval", "wait", "--request", "999999", "--timeout", "1s")
    assert missing.returncode == 1 and "404" in missing.stderr


@pytest.mark.django_db(transaction=True)
def test_cli_pipeline_commands(live_server: Any, tmp_path: Path) -> None:
    p = _portal(live_server, risk_tier="minimal")
    key = tmp_path / "ci.pem"
    assert _cli(p, "key", "generate", "--out", str(key)).returncode == 0
    registered = _cli(p, "--json", "key", "register", str(key), "--name", "ci")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["key_id"] == key_id(key.read_bytes())

    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,a\n2,b\n")
    dataset = ["dataset", "register", "--dataset", str(p.dataset.pk), "--version", "v1"]
    dv = _cli(p, "--json", *dataset, str(data), "--set", "motivation=Why not.")
    assert dv.returncode == 0, dv.stderr
    dv_id = json.loads(dv.stdout)["id"]

    card = {
        "--intended-use": "Ranking.",
        "--out-of-scope-uses": "Refusals.",
        "--limitations": "Thin files.",
        "--ethical-considerations": "Monitored.",
    }
    model = _cli(
        p,
        "--json",
        *["model", "register", "--model", str(p.model.pk), "--version", "1.0"],
        *["--metrics", '{"auc": 0.9}', "--training-dataset", str(dv_id)],
        *[arg for pair in card.items() for arg in pair],
    )
    assert model.returncode == 0, model.stderr
    mv = json.loads(model.stdout)
    assert mv["metrics"] == {"auc": 0.9} and mv["training_datasets"] == [dv_id]

    weights = tmp_path / "model.bin"
    weights.write_bytes(b"weights")
    upload = ["artifact", "upload", "--model-version", str(mv["id"]), str(weights)]
    art = _cli(p, *upload, "--uri", "s3://m/model.bin", "--sign-key", str(key))
    assert art.returncode == 0, art.stderr
    assert "signature verified" in art.stdout
    assert Artifact.objects.get(model_version_id=mv["id"]).attestations.get().verdict == "verified"

    evidence = ["evidence", "add", "--kind", "test_results", "--title", "unit tests"]
    ev = _cli(p, "--json", *evidence, "--model-version", str(mv["id"]), "--data", '{"passed": 1}')
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["data"] == {"passed": 1}

    req = _cli(p, "--json", "approval", "request", "--model-version", str(mv["id"]))
    assert req.returncode == 0, req.stderr
    assert json.loads(req.stdout)["state"] in ("submitted", "in_review")

    # a refusal: exit 1, the server's field errors on stderr (and as JSON on stdout)
    bad = _cli(p, "--json", *dataset, "--no-upload", str(data))  # v1 exists already
    assert bad.returncode == 1
    assert "400" in bad.stderr
    error = json.loads(bad.stdout)["error"]
    assert error["status"] == 400 and error["errors"]


@pytest.mark.django_db(transaction=True)
def test_field_errors_and_refusals_surface(live_server: Any) -> None:
    p = _portal(live_server)
    charter = Client(p.url, p.token)
    with pytest.raises(BadRequest) as exc:
        charter.register_model_version(p.model.pk, "", metrics={"auc": 0.9})
    assert "version" in exc.value.errors and exc.value.status == 400

    mv = f.model_version(p.model)
    stranger = Ed25519PrivateKey.generate()  # never registered
    with pytest.raises(BadRequest) as exc:
        charter.upload_artifact(mv.pk, "ab" * 32, "m.onnx", "s3://m", key=stranger, size_bytes=3)
    assert "not signed by a registered key" in " ".join(exc.value.errors["envelope"])
    assert not Artifact.objects.filter(model_version=mv).exists()  # both or neither

    with pytest.raises(NotFound):
        charter.get_approval(999999)
    with pytest.raises(Unauthorized):
        Client(p.url, "chtr_nope_nope").get("datasets/")
    other = f.use_case(name="Someone else's")
    with pytest.raises(BadRequest) as exc:  # not visible: named as a bad id, never shown
        charter.register_model_version(f.model(other).pk, "1.0")
    assert "model" in exc.value.errors


@pytest.mark.django_db(transaction=True)
def test_list_follows_pages(live_server: Any) -> None:
    p = _portal(live_server)
    for _ in range(6):
        f.dataset(p.uc)
    f.dataset(f.use_case())  # not visible to the pipeline
    charter = Client(p.url, p.token)
    pages: list[str] = []
    get = charter.get

    def counting_get(path: str, params: Any = None) -> Any:
        pages.append(path)
        return get(path, params)

    charter.get = counting_get  # type: ignore[method-assign]
    items = list(charter.list("datasets/", page_size=3))
    assert len(pages) == 3 and "page=2" in pages[1] and "page=3" in pages[2]
    assert sorted(d["id"] for d in items) == sorted(p.uc.datasets.values_list("id", flat=True))
    assert len(items) == 7


@pytest.mark.django_db(transaction=True)
def test_oversized_upload_raises_too_large(live_server: Any, settings: Any, tmp_path: Path) -> None:
    settings.CHARTER_MAX_UPLOAD_BYTES = 1 << 20
    p = _portal(live_server)
    data = tmp_path / "big.bin"
    data.write_bytes(os.urandom(3 << 20))
    with pytest.raises(TooLarge) as exc:
        Client(p.url, p.token).register_dataset_version(p.dataset.pk, "v1", data)
    assert exc.value.status == 413 and "limit is 1048576 bytes" in exc.value.detail
    assert not DatasetVersion.objects.filter(dataset=p.dataset).exists()
