"""Lineage reports for auditors: every object on a subject's path with its governance facts.

A subject is a model version, a deployment or a use case. The path runs from the
raw data (dataset versions and what they were derived from), through the model
version and the versions it was retrained from, to its deployments and the use
case. Each object carries its governance facts: datasheet and model-card
summaries, approvals with decisions, signatures and their verdicts, and the
audit events that touched it. Only what the requesting user may see is included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import models
from django.utils import timezone

from approvals.models import ApprovalRequest
from audits.models import AuditEvent
from audits.services import object_label
from portal.permissions import Access
from registry.models import DatasetVersion, Deployment, ModelVersion, UseCase
from registry.signing import signature_status, signer_label

MAX_EVENTS_PER_OBJECT = 25


def _events(obj: models.Model) -> list[dict[str, Any]]:
    object_type, object_id, _ = object_label(obj)
    rows = AuditEvent.objects.filter(object_type=object_type, object_id=object_id).order_by("-seq")[
        :MAX_EVENTS_PER_OBJECT
    ]
    return [
        {
            "seq": e.seq,
            "time": e.created_at.isoformat(),
            "actor": e.actor_repr,
            "action": e.action,
            "hash": e.hash,
        }
        for e in rows
    ]


def _dataset_version(dv: DatasetVersion, role: str) -> dict[str, Any]:
    return {
        "kind": "dataset_version",
        "id": dv.pk,
        "name": str(dv),
        "role": role,
        "facts": {
            "sha256": dv.sha256,
            "rows": dv.row_count,
            "sensitivity": dv.sensitivity,
            "license": dv.license,
            "motivation": dv.motivation,
            "composition": dv.composition,
            "collection_process": dv.collection_process,
            "preprocessing": dv.preprocessing,
            "derived_from": sorted(dv.derived_from.values_list("pk", flat=True)),
        },
        "events": _events(dv),
    }


def _upstream_datasets(roots: Iterable[tuple[DatasetVersion, str]], access: Access) -> list[Any]:
    """Dataset versions used by the model and, transitively, those they were derived from."""
    seen: dict[int, dict[str, Any]] = {}
    queue = list(roots)
    while queue:
        dv, role = queue.pop(0)
        if dv.pk in seen or not access.can_view(dv.use_case):
            continue
        seen[dv.pk] = _dataset_version(dv, role)
        for parent in dv.derived_from.select_related("dataset", "use_case"):
            queue.append((parent, f"upstream of {dv}"))
    return list(seen.values())


def _signatures(atts: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {
            "verdict": a.verdict,
            "signer": signer_label(a),
            "key_id": a.signer_key.key_id if a.signer_key else "",
            "predicate_type": a.predicate_type,
            "reason": a.reason,
            "verified_at": a.verified_at.isoformat(),
        }
        for a in atts
    ]


def _approvals(version: ModelVersion) -> list[dict[str, Any]]:
    out = []
    for req in ApprovalRequest.objects.filter(model_version=version).select_related("policy"):
        out.append(
            {
                "kind": "approval_request",
                "id": req.pk,
                "name": str(req),
                "facts": {
                    "state": req.state,
                    "environment": req.environment,
                    "policy": f"{req.policy.name} v{req.policy.version}",
                    "decided_at": req.decided_at.isoformat() if req.decided_at else None,
                    "expires_at": req.expires_at.isoformat() if req.expires_at else None,
                    "checks": req.check_results,
                    "decisions": [
                        {
                            "reviewer": d.reviewer.get_username(),
                            "role": d.role,
                            "verdict": d.verdict,
                            "comment": d.comment,
                            "at": d.created_at.isoformat(),
                        }
                        for d in req.decisions.select_related("reviewer")
                    ],
                    "signed_approval": bool(req.attestation),
                    "closed_reason": req.closed_reason,
                },
                "events": _events(req),
            }
        )
    return out


def _drift_status(deployment: Deployment) -> dict[str, Any] | None:
    """The latest drift verdict of a deployment, once the monitoring app records them."""
    try:
        result = apps.get_model("workers", "DriftResult")
    except LookupError:
        return None
    latest = result.objects.filter(deployment=deployment).order_by("-pk").first()
    if latest is None:
        return None
    return {
        f.name: getattr(latest, f.name)
        for f in latest._meta.concrete_fields
        if f.name in ("dataset_drift", "drift_share", "window_start", "window_end", "drifted")
    }


def _model_version(mv: ModelVersion, role: str) -> dict[str, Any]:
    artifacts = mv.artifacts.prefetch_related("attestations__signer_key__owner")
    evidence = mv.evidence.prefetch_related("attestations__signer_key__owner")
    return {
        "kind": "model_version",
        "id": mv.pk,
        "name": str(mv),
        "role": role,
        "facts": {
            "status": mv.status,
            "model_card": {f: getattr(mv, f) for f in ModelVersion.MODEL_CARD_FIELDS},
            "metrics": mv.metrics,
            "subgroup_metrics": mv.subgroup_metrics,
            "code": {"repository": mv.code_repository, "commit": mv.code_commit},
            "parameters": mv.parameters,
            "registered_by": mv.registered_by.get_username() if mv.registered_by else None,
            "artifacts": [
                {
                    "name": a.name,
                    "sha256": a.sha256,
                    "uri": a.uri,
                    "signature": signature_status(a.attestations.all()),
                    "signatures": _signatures(a.attestations.all()),
                }
                for a in artifacts
            ],
            "evidence": [
                {
                    "kind": e.kind,
                    "title": e.title,
                    "sha256": e.sha256,
                    "signature": signature_status(e.attestations.all()),
                    "signatures": _signatures(e.attestations.all()),
                }
                for e in evidence
            ],
        },
        "events": _events(mv),
    }


def _deployment(d: Deployment) -> dict[str, Any]:
    return {
        "kind": "deployment",
        "id": d.pk,
        "name": f"{d.model_version} in {d.environment}",
        "role": "deployment",
        "facts": {
            "environment": d.environment,
            "region": d.region,
            "status": d.status,
            "strategy": d.strategy,
            "released_at": d.released_at.isoformat(),
            "replaces": d.replaces_id,
            "drift": _drift_status(d),
        },
        "events": _events(d),
    }


def _use_case(uc: UseCase) -> dict[str, Any]:
    return {
        "kind": "use_case",
        "id": uc.pk,
        "name": uc.name,
        "role": "use case",
        "facts": {
            "purpose": uc.purpose,
            "risk_tier": uc.risk_tier,
            "risk_rationale": uc.risk_rationale,
            "status": uc.status,
            "human_oversight": uc.human_oversight,
            "next_review_date": uc.next_review_date.isoformat() if uc.next_review_date else None,
        },
        "events": _events(uc),
    }


def _for_version(mv: ModelVersion, access: Access) -> list[dict[str, Any]]:
    roots = [
        (dv, role)
        for role, name in (
            ("training data", "training_datasets"),
            ("validation data", "validation_datasets"),
            ("test data", "test_datasets"),
        )
        for dv in getattr(mv, name).select_related("dataset", "use_case")
    ]
    objects = _upstream_datasets(roots, access)
    ancestors = []
    parent = mv.parent
    while parent is not None and len(ancestors) < 20:
        ancestors.append(_model_version(parent, "retrained from"))
        parent = parent.parent
    objects += list(reversed(ancestors))
    objects.append(_model_version(mv, "subject"))
    objects += _approvals(mv)
    objects += [_deployment(d) for d in mv.deployments.select_related("model_version")]
    return objects


def build_report(subject: models.Model, access: Access) -> dict[str, Any]:
    """The report as a JSON-able dict; ``subject`` must already be visible to ``access``."""
    if isinstance(subject, ModelVersion):
        objects = _for_version(subject, access)
        use_case = subject.use_case
    elif isinstance(subject, Deployment):
        objects = [
            o for o in _for_version(subject.model_version, access) if o["kind"] != "deployment"
        ]
        objects.append(_deployment(subject))
        use_case = subject.use_case
    elif isinstance(subject, UseCase):
        use_case = subject
        objects = []
        for mv in access.filter(ModelVersion.objects.filter(use_case=subject)).order_by("pk"):
            if mv.deployments.exists():
                objects += [o for o in _for_version(mv, access) if o not in objects]
    else:
        raise TypeError(f"no report for {type(subject).__name__}")
    objects.append(_use_case(use_case))
    object_type, object_id, label = object_label(subject)
    return {
        "format": "charter-lineage-report/1",
        "subject": {"type": object_type, "id": object_id, "name": label},
        "generated_at": timezone.now().isoformat(),
        "generated_by": access.actor.get_username() if access.actor is not None else "system",
        "objects": objects,
    }
