"""Each example check of the issue, on facts gathered from real registry objects."""

from __future__ import annotations

from typing import Any

import pytest

from approvals import facts, policy
from approvals.defaults import AUC, BASELINE, BIAS, CARD, INCIDENTS, RECALL, SIGNED
from portal.permissions import Access
from registry import services
from registry.signing import revoke_signing_key
from tests.approvals.rig import Rig, build_rig, make_version


@pytest.fixture
def rig(db: Any) -> Rig:
    return build_rig()


def _run(check: dict[str, str], data: dict[str, Any]) -> policy.CheckResult:
    return policy.evaluate([check], data)[0]


def test_all_default_high_risk_checks_pass_for_a_complete_version(rig: Rig) -> None:
    data = facts.gather(rig.mv, "production")
    results = policy.evaluate([CARD, SIGNED, AUC, RECALL, BIAS, INCIDENTS, BASELINE], data)
    assert [r.passed for r in results] == [True] * 7, results


def test_model_card_complete(rig: Rig) -> None:
    services.update_model_version(Access.system(), rig.mv, limitations="")
    result = _run(CARD, facts.gather(rig.mv, "production"))
    assert not result.passed and result.detail == "false"
    assert facts.gather(rig.mv, "production")["model_card"]["missing"] == ["limitations"]


def test_artifact_signature_verified_by_an_unrevoked_key(rig: Rig) -> None:
    assert _run(SIGNED, facts.gather(rig.mv, "production")).passed
    unsigned, _ = make_version(rig.uc, rig.contributor, sign=False, model=rig.mv.model)
    assert not _run(SIGNED, facts.gather(unsigned, "production")).passed
    # revoke the key that signed: the same signature no longer counts
    att = rig.artifact.attestations.get()
    revoke_signing_key(Access.system(), att.signer_key, reason="compromised")
    data = facts.gather(rig.mv, "production")
    assert not _run(SIGNED, data).passed
    assert "revoked" in data["artifacts"][0]["reason"]


@pytest.mark.parametrize(("candidate", "passes"), [(0.895, True), (0.89, True), (0.889, False)])
def test_auc_not_below_the_deployed_version_by_more_than_001(
    rig: Rig, candidate: float, passes: bool
) -> None:
    deployed, _ = make_version(rig.uc, rig.contributor, model=rig.mv.model, metrics={"auc": 0.9})
    from registry.models import Deployment

    # what is in production already (inserted directly: this test is about the check)
    Deployment.objects.create(
        model_version=deployed,
        use_case=rig.uc,
        environment="production",
        released_at=deployed.created_at,
    )
    services.update_model_version(Access.system(), rig.mv, metrics={"auc": candidate})
    data = facts.gather(rig.mv, "production")
    assert data["deployed"]["present"] and data["deployed"]["metrics"]["auc"] == 0.9
    assert _run(AUC, data).passed is passes
    # nothing deployed in staging: the check passes vacuously
    assert _run(AUC, facts.gather(rig.mv, "staging")).passed


def test_no_subgroup_recall_below_08(rig: Rig) -> None:
    assert _run(RECALL, facts.gather(rig.mv, "production")).passed
    services.update_model_version(
        Access.system(), rig.mv, subgroup_metrics={"a": {"recall": 0.81}, "b": {"recall": 0.79}}
    )
    assert not _run(RECALL, facts.gather(rig.mv, "production")).passed
    services.update_model_version(Access.system(), rig.mv, subgroup_metrics={"a": {"auc": 0.9}})
    assert not _run(RECALL, facts.gather(rig.mv, "production")).passed  # recall not reported
    # the same rule written with a list macro gives the same verdicts
    macro = {"name": "m", "expression": "subgroups.all(s, s.metrics.recall >= 0.8)"}
    services.update_model_version(
        Access.system(), rig.mv, subgroup_metrics={"a": {"recall": 0.81}, "b": {"recall": 0.79}}
    )
    assert not _run(macro, facts.gather(rig.mv, "production")).passed


def test_bias_evaluation_evidence_present(rig: Rig) -> None:
    assert _run(BIAS, facts.gather(rig.mv, "production")).passed
    bare, _ = make_version(rig.uc, rig.contributor, model=rig.mv.model)
    bare.evidence.filter(kind="bias_evaluation").update(kind="other")
    assert not _run(BIAS, facts.gather(bare, "production")).passed


def test_no_open_high_severity_incident() -> None:
    base = {"incidents": []}
    assert _run(INCIDENTS, base).passed
    assert _run(INCIDENTS, {"incidents": [{"severity": "low", "title": "x"}]}).passed
    assert not _run(INCIDENTS, {"incidents": [{"severity": "high", "title": "drift"}]}).passed


def test_drift_baseline_present(rig: Rig) -> None:
    assert _run(BASELINE, facts.gather(rig.mv, "production")).passed
    dv = rig.mv.training_datasets.get()
    type(dv).objects.filter(pk=dv.pk).update(quality_summary={})
    assert not _run(BASELINE, facts.gather(rig.mv, "production")).passed


def test_a_missing_fact_fails_the_check_with_the_reason() -> None:
    result = _run({"name": "x", "expression": "metrics.f1 >= 0.5"}, {"metrics": {"auc": 1.0}})
    assert not result.passed
    assert result.detail.startswith("error: ") and "f1" in result.detail


def test_a_non_boolean_result_fails() -> None:
    result = _run({"name": "x", "expression": "metrics.auc"}, {"metrics": {"auc": 1.0}})
    assert not result.passed and result.detail == "1.0"
