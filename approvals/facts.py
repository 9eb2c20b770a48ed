"""What a policy's checks see about a request, and the fingerprint an approval binds to."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from django.apps import apps
from django.db.models import Prefetch
from django.utils import timezone

from registry.models import Artifact, Attestation, Deployment, ModelVersion, UseCase
from registry.signing import reverify, signature_status, signer_label


def _subgroups(version: ModelVersion) -> tuple[list[dict[str, Any]], dict[str, float]]:
    groups = [
        {"name": name, "metrics": metrics}
        for name, metrics in sorted((version.subgroup_metrics or {}).items())
    ]
    lowest: dict[str, float] = {}
    for group in groups:
        for metric, value in group["metrics"].items():
            lowest[metric] = min(value, lowest.get(metric, value))
    return groups, lowest


def deployed_version(version: ModelVersion, environment: str) -> ModelVersion | None:
    """The version of the same model active in ``environment`` now (not this one)."""
    deployment = (
        Deployment.objects.filter(
            model_version__model_id=version.model_id,
            environment=environment,
            status=Deployment.Status.ACTIVE,
        )
        .exclude(model_version_id=version.pk)
        .select_related("model_version")
        .order_by("-released_at")
        .first()
    )
    return deployment.model_version if deployment else None


def artifact_signatures(version: ModelVersion) -> list[dict[str, Any]]:
    """Each artifact with whether a signature over it verifies *now* by an unrevoked key."""
    out = []
    attestations = Attestation.objects.select_related("signer_key__owner", "created_by")
    artifacts = Artifact.objects.filter(model_version=version).prefetch_related(
        Prefetch("attestations", queryset=attestations)
    )
    for artifact in artifacts:
        verified, signer, reason = False, "", "unsigned"
        for att in artifact.attestations.all():
            if att.verdict != Attestation.Verdict.VERIFIED:
                reason = att.reason or "signature failed verification"
                continue
            key = att.signer_key
            if key is not None and key.revoked_at is not None:
                reason = f"signing key {key.key_id[:16]} is revoked"
                continue
            ok, why = reverify(att, fresh_key=key)  # key loaded just now, with the artifact
            if ok:
                verified, signer, reason = True, signer_label(att), ""
                break
            reason = why
        out.append(
            {
                "name": artifact.name,
                "sha256": artifact.sha256,
                "signature_verified": verified,
                "signer": signer,
                "reason": reason,
            }
        )
    return out


def open_incidents(use_case: UseCase) -> list[dict[str, Any]]:
    """Open incidents of the use case, once the monitoring app defines them."""
    try:
        incident = apps.get_model("workers", "Incident")
    except LookupError:
        return []
    rows = incident.objects.filter(use_case=use_case, closed_at__isnull=True)
    return [{"severity": i.severity, "title": i.title} for i in rows]


def gather(version: ModelVersion, environment: str) -> dict[str, Any]:
    """The facts dictionary for a release request (see approvals/policy.py)."""
    use_case = version.use_case
    card = {field: getattr(version, field) for field in ModelVersion.MODEL_CARD_FIELDS}
    missing = [field for field, value in card.items() if not str(value).strip()]
    subgroups, lowest = _subgroups(version)
    deployed = deployed_version(version, environment)
    deployed_facts: dict[str, Any] = {
        "present": False,
        "version": "",
        "metrics": {},
        "subgroup_min": {},
    }
    if deployed is not None:
        _, deployed_lowest = _subgroups(deployed)
        deployed_facts = {
            "present": True,
            "version": deployed.version,
            "metrics": deployed.metrics or {},
            "subgroup_min": deployed_lowest,
        }
    evidence = [
        {"kind": e.kind, "title": e.title, "signature": signature_status(e.attestations.all())}
        for e in version.evidence.prefetch_related(
            Prefetch(
                "attestations", queryset=Attestation.objects.only("id", "evidence_id", "verdict")
            )
        )
    ]
    artifacts = artifact_signatures(version)
    training = list(version.training_datasets.all())
    return {
        "model_card": {**card, "complete": not missing, "missing": missing},
        "metrics": version.metrics or {},
        "subgroups": subgroups,
        "subgroup_min": lowest,
        "deployed": deployed_facts,
        "evidence_types": sorted({e["kind"] for e in evidence}),
        "evidence": evidence,
        "artifact": {
            "present": bool(artifacts),
            "signature_verified": bool(artifacts)
            and all(a["signature_verified"] for a in artifacts),
            "sha256": artifacts[0]["sha256"] if artifacts else "",
            "signer": artifacts[0]["signer"] if artifacts else "",
        },
        "artifacts": artifacts,
        "drift_baseline": any(
            getattr(dv, "reference_profile", None) or dv.quality_summary for dv in training
        ),
        "incidents": open_incidents(use_case),
        "use_case": {
            "risk_tier": use_case.risk_tier,
            "status": use_case.status,
            "personal_data": use_case.personal_data,
            "decision_impact": use_case.decision_impact,
        },
        "environment": environment,
    }


def gather_intake(use_case: UseCase) -> dict[str, Any]:
    """Facts for a use-case intake request: no model version yet."""
    return {
        "model_card": {"complete": False, "missing": []},
        "metrics": {},
        "subgroups": [],
        "subgroup_min": {},
        "deployed": {"present": False, "version": "", "metrics": {}, "subgroup_min": {}},
        "evidence_types": sorted(
            set(use_case.evidence.filter(model_version=None).values_list("kind", flat=True))
        ),
        "evidence": [],
        "artifact": {"present": False, "signature_verified": False, "sha256": "", "signer": ""},
        "artifacts": [],
        "drift_baseline": False,
        "incidents": open_incidents(use_case),
        "use_case": {
            "risk_tier": use_case.risk_tier,
            "status": use_case.status,
            "personal_data": use_case.personal_data,
            "decision_impact": use_case.decision_impact,
            "purpose": use_case.purpose,
            "risk_rationale": use_case.risk_rationale,
            "human_oversight": use_case.human_oversight,
        },
        "environment": "intake",
    }


def fingerprint(version: ModelVersion) -> str:
    """SHA-256 over what an approval of ``version`` vouches for.

    The model card, metrics, parameters, code commit, dataset links, every
    artifact's digest, every evidence item and every attestation on them: a
    change to any of these after approval voids it.
    """
    body = {
        "card": {f: getattr(version, f) for f in ModelVersion.MODEL_CARD_FIELDS},
        "metrics": version.metrics,
        "subgroup_metrics": version.subgroup_metrics,
        "parameters": version.parameters,
        "code": [version.code_repository, version.code_commit],
        "datasets": {
            role: sorted(getattr(version, role).values_list("pk", flat=True))
            for role in ("training_datasets", "validation_datasets", "test_datasets")
        },
        "artifacts": sorted(
            Artifact.objects.filter(model_version=version).values_list("pk", "sha256", "uri")
        ),
        "evidence": sorted(
            version.evidence.values_list("pk", "kind", "sha256", "uri", "title", "summary")
        ),
        "attestations": sorted(
            Attestation.objects.filter(artifact__model_version=version).values_list("pk", "verdict")
        )
        + sorted(
            Attestation.objects.filter(evidence__model_version=version).values_list("pk", "verdict")
        ),
    }
    data = rfc8785.dumps(_plain(body))
    return hashlib.sha256(data).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return timezone.localtime(value).isoformat() if hasattr(value, "tzinfo") else str(value)
    return str(value)
