"""The data the API fuzzing runs against: one user per role with a real API token, and
objects of every kind the API serves, so that generated requests can name ids that exist.

``REFS`` maps a kind of object to the ids seeded for it; the hypothesis hooks of
``test_schemathesis.py`` draw path parameters, query filters and body references from it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import override_settings

from portal import roles
from portal.permissions import Access
from portal.services import create_service_account, grant_access, issue_token
from tests import factories as f
from tests.conftest import build_tree

# The roles whose tokens the fuzzing uses. ``pipeline`` is a service account that
# contributes to use case A, with a token scoped to A (how CI and training jobs call in).
ROLES = (
    "admin",
    "board",
    "risk",
    "auditor",
    "contributor_a",
    "viewer_a",
    "outsider",
    "pipeline",
)

PRODUCER = "https://github.com/example/pipelines/tree/v1"


@dataclass
class Seeded:
    tokens: dict[str, str]
    refs: dict[str, list[Any]] = field(default_factory=dict)


def _pem() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _lineage_event(use_case: Any, dv: Any) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": datetime.now(UTC).isoformat(),
        "run": {"runId": str(uuid.uuid4()), "facets": {}},
        "job": {
            "namespace": "airflow://etl",
            "name": f"build_training_set_{use_case.pk}",
            "facets": {
                "charter": {
                    "_producer": PRODUCER,
                    "_schemaURL": "https://charter.example/facets/charter.json",
                    "useCase": use_case.pk,
                }
            },
        },
        "inputs": [{"namespace": "postgres://warehouse:5432", "name": "raw.events", "facets": {}}],
        "outputs": [{"namespace": "s3://data", "name": f"training/{dv.pk}", "facets": {}}],
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def seed() -> Seeded:
    """Build the fuzzing world through the service layer (call inside a transaction)."""
    from approvals import services as approvals
    from approvals.models import ApprovalPolicy, ApprovalRequest, Notification
    from lineage import services as lineage
    from lineage.models import LineageEvent, LineageNode
    from portal import webhooks
    from registry import signing
    from workers import retraining
    from workers import services as monitoring

    system = Access.system()
    uc_a = f.use_case(name="Credit scoring")
    uc_b = f.use_case(name="Fraud detection")
    users = {
        "admin": f.user("admin_user", roles=(roles.ADMIN,), is_staff=True),
        "board": f.user("board_user", roles=(roles.BOARD,)),
        "risk": f.user("risk_user", roles=(roles.RISK_OFFICER,)),
        "auditor": f.user("auditor_user", roles=(roles.AUDITOR,)),
        "contributor_a": f.user("contrib_a", roles=(roles.CONTRIBUTOR,)),
        "viewer_a": f.user("viewer_a", roles=(roles.VIEWER,)),
        "outsider": f.user("outsider"),
    }
    grant_access(system, uc_a, users["contributor_a"], "contribute")
    grant_access(system, uc_a, users["viewer_a"], "view")
    account = create_service_account(system, username="fuzz-pipeline")
    grant_access(system, uc_a, account.user, "contribute")
    users["pipeline"] = account.user

    tokens = {}
    for role, user in users.items():
        scope = [uc_a] if role == "pipeline" else None
        tokens[role] = issue_token(system, user=user, name=f"fuzz {role}", use_cases=scope)[1]

    trees = [build_tree(uc_a), build_tree(uc_b)]
    contributor = Access(user=users["contributor_a"])
    key = signing.register_signing_key(contributor, public_key_pem=_pem(), name="ci key")
    attestation = signing.sign_artifact_as_portal(
        contributor, trees[0]["artifact"], "https://charter.example/fuzz/v1", {"ok": True}
    )
    request = approvals.create_request(
        contributor, model_version=trees[0]["model_version"], environment="production"
    )
    rules = [
        monitoring.create_alert_rule(
            system, t["deployment"], name="error budget", kind="error_rate", threshold=0.05
        )
        for t in trees
    ]
    incidents = [
        monitoring.open_incident(system, t["deployment"], title="Odd scores", severity="low")
        for t in trees
    ]
    templates = [
        retraining.set_template(
            system, t["model"], spec={"entrypoint": ["{python}", "-c", "pass"]}, enabled=False
        )
        for t in trees
    ]
    pipeline = Access(user=users["pipeline"])
    lineage.ingest(pipeline, [_lineage_event(uc_a, trees[0]["dataset_version"])])
    with override_settings(CHARTER_WEBHOOK_ALLOWED_HOSTS=["127.0.0.1"]):
        # Inactive: no delivery is ever attempted, but every webhook operation has a target.
        hook, _ = webhooks.create_subscription(
            Access(user=users["admin"]),
            url="http://127.0.0.1:9/hook",
            events=["version.registered"],
            active=False,
        )

    refs: dict[str, list[Any]] = {
        kind: [t[kind].pk for t in trees]
        for kind in (
            "use_case",
            "dataset",
            "dataset_version",
            "model",
            "model_version",
            "evidence",
            "artifact",
            "deployment",
        )
    }
    refs["signing_key"] = [key.pk, attestation.signer_key_id]
    refs["attestation"] = [attestation.pk]
    refs["approval_request"] = [request.pk]
    refs["approval_policy"] = list(
        ApprovalPolicy.objects.order_by("pk").values_list("pk", flat=True)[:3]
    )
    refs["alert_rule"] = [r.pk for r in rules]
    refs["incident"] = [i.pk for i in incidents]
    refs["retraining_template"] = [t.pk for t in templates]
    refs["lineage_event"] = list(LineageEvent.objects.values_list("pk", flat=True)[:2])
    refs["lineage_node"] = list(LineageNode.objects.order_by("pk").values_list("pk", flat=True)[:4])
    refs["node_key"] = list(LineageNode.objects.order_by("pk").values_list("key", flat=True)[:4])
    refs["webhook"] = [hook.pk]
    refs["token"] = [t.pk for t in users["admin"].api_tokens.all()] + [
        t.pk for t in users["contributor_a"].api_tokens.all()
    ]
    refs["notification"] = list(Notification.objects.values_list("pk", flat=True)[:2])
    refs["user"] = [u.pk for u in users.values()]
    refs["approval_request_any"] = list(ApprovalRequest.objects.values_list("pk", flat=True))
    refs["datetime"] = [(datetime.now(UTC) - timedelta(days=1)).isoformat()]
    return Seeded(tokens=tokens, refs=refs)


# Filled by the ``fuzz_world`` fixture for the duration of a module; read at draw time.
REFS: dict[str, list[Any]] = {}
