"""The policies Charter ships with (installed by a data migration; editable in the UI)."""

from __future__ import annotations

from typing import Any

CARD = {
    "name": "model card complete",
    "expression": "model_card.complete",
    "description": "intended use, out-of-scope uses, limitations and ethics are filled in",
}
SIGNED = {
    "name": "artifact signature verified",
    "expression": "artifact.present && artifact.signature_verified",
    "description": "every artifact carries a signature that verifies now by an unrevoked key",
}
AUC = {
    "name": "AUC not below the deployed version's by more than 0.01",
    "expression": "!deployed.present || !has(deployed.metrics.auc) || "
    "(has(metrics.auc) && metrics.auc >= deployed.metrics.auc - 0.01)",
    "description": "no regression against what is in production",
}
RECALL = {
    "name": "no subgroup's recall below 0.8",
    "expression": "has(subgroup_min.recall) && subgroup_min.recall >= 0.8",
    "description": "subgroup metrics must report recall, and the worst group reaches 0.8",
}
BIAS = {
    "name": "bias evaluation evidence present",
    "expression": "'bias_evaluation' in evidence_types",
    "description": "",
}
INCIDENTS = {
    "name": "no open high-severity incident",
    "expression": "!incidents.exists(i, i.severity == 'high')",
    "description": "",
}
BASELINE = {
    "name": "drift baseline present",
    "expression": "drift_baseline",
    "description": "a training dataset version carries a reference profile for drift monitoring",
}
INTAKE_DOCS = {
    "name": "purpose and risk rationale written",
    "expression": "size(use_case.purpose) > 0 && size(use_case.risk_rationale) > 0",
    "description": "",
}


def default_policies() -> list[dict[str, Any]]:
    board, risk = "governance board", "risk officer"
    out: list[dict[str, Any]] = []
    release = {
        "minimal": ({board: 1}, [CARD, SIGNED], [], 365, False),
        "limited": ({board: 1}, [CARD, SIGNED, AUC, INCIDENTS], [], 365, True),
        "high": (
            {board: 2, risk: 1},
            [CARD, SIGNED, AUC, RECALL, BIAS, INCIDENTS, BASELINE],
            ["bias_evaluation", "validation_report"],
            180,
            True,
        ),
    }
    for tier, (quorum, checks, evidence, days, sod) in release.items():
        for env in ("production", "staging"):
            staging = env == "staging"
            out.append(
                {
                    "risk_tier": tier,
                    "environment": env,
                    "name": f"{tier.capitalize()} risk: release to {env}",
                    "quorum": {risk: 1} if staging else quorum,
                    "checks": [CARD] if staging else checks,
                    "required_evidence": [] if staging else evidence,
                    "validity_days": 90 if staging else days,
                    "separation_of_duties": sod,
                }
            )
    for tier in ("high", "unacceptable"):
        # Running a retraining job on a high-risk use case's data and compute needs a risk
        # officer's go (workers/retraining.py); the version it produces is approved as usual.
        out.append(
            {
                "risk_tier": tier,
                "environment": "retraining",
                "name": f"{tier.capitalize()} risk: retraining job",
                "quorum": {risk: 1},
                "checks": [],
                "required_evidence": [],
                "validity_days": 30,
                "separation_of_duties": True,
            }
        )
    for tier in ("minimal", "limited", "high", "unacceptable"):
        heavy = tier in ("high", "unacceptable")
        out.append(
            {
                "risk_tier": tier,
                "environment": "intake",
                "name": f"{tier.capitalize()} risk: use-case intake",
                "quorum": {board: 2, risk: 1} if heavy else {board: 1},
                "checks": [INTAKE_DOCS],
                "required_evidence": ["impact_assessment"] if heavy else [],
                "validity_days": 3650,
                "separation_of_duties": True,
            }
        )
    return out


def install_defaults(policy_model: Any) -> None:
    """Create the shipped policies that are missing (idempotent; takes the model class so the
    data migration can pass its historical one)."""
    for data in default_policies():
        if not policy_model.objects.filter(
            risk_tier=data["risk_tier"], environment=data["environment"]
        ).exists():
            policy_model.objects.create(version=1, **data)
