"""The deployment gate: no deployment to a gated environment without an approval.

A deployment of a model version to a gated environment (``CHARTER_GATED_ENVIRONMENTS``,
production by default) needs an approved, unexpired request for exactly that
version and environment whose fingerprint still matches the version (nothing
it vouched for changed), and a signature over every artifact that verifies now
by an unrevoked key. A rollback may instead rely on an earlier approval of the
version for that environment when the policy allows it. Enforced by the
registry's service layer (registry.services.record_deployment and
rollback_deployment), so the API, UI, admin and tasks all pass through it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from approvals import facts as facts_mod
from approvals.models import ApprovalRequest
from audits.models import AuditEvent
from audits.services import record
from registry.models import ModelVersion


class GateRefused(ValidationError):
    """The deployment is refused (HTTP 409 over the API; a form error in the UI and the
    admin); ``reasons`` say why, under the ``model_version`` field."""

    def __init__(self, version: ModelVersion, environment: str, reasons: list[str]) -> None:
        super().__init__({"model_version": [f"gate ({environment}): {r}" for r in reasons]})
        self.version, self.environment, self.reasons = version, environment, reasons

    def __str__(self) -> str:
        return f"deployment of {self.version} to {self.environment} refused: " + "; ".join(
            self.reasons
        )


def is_gated(environment: str) -> bool:
    return environment in settings.CHARTER_GATED_ENVIRONMENTS


def reasons(version: ModelVersion, environment: str, *, rollback: bool = False) -> list[str]:
    """Empty when the gate opens; otherwise every reason it stays shut."""
    if not is_gated(environment):
        return []
    now = timezone.now()
    found: list[str] = []
    requests = ApprovalRequest.objects.filter(
        model_version=version, environment=environment
    ).select_related("policy")
    current = requests.filter(state=ApprovalRequest.State.APPROVED).order_by("-decided_at").first()
    fingerprint = facts_mod.fingerprint(version)
    if current is not None and current.expires_at and current.expires_at <= now:
        found.append(
            f"the approval (request {current.pk}) expired on {current.expires_at:%Y-%m-%d}"
        )
    elif current is not None and current.fingerprint != fingerprint:
        found.append(
            f"the approval (request {current.pk}) is void: the version, its artifacts or its "
            "evidence changed after approval"
        )
    elif current is None:
        earlier = None
        if rollback:
            earlier = (
                requests.filter(
                    state__in=[ApprovalRequest.State.EXPIRED, ApprovalRequest.State.SUPERSEDED],
                    policy__rollback_without_approval=True,
                    fingerprint=fingerprint,
                )
                .order_by("-decided_at")
                .first()
            )
        if earlier is None:
            latest = requests.order_by("-created_at").first()
            if latest is None:
                found.append(f"no approval request for this version in {environment}")
            elif latest.state == ApprovalRequest.State.EXPIRED:
                found.append(f"the approval (request {latest.pk}) expired")
            elif latest.state == ApprovalRequest.State.SUPERSEDED:
                found.append(f"the approval (request {latest.pk}) was {latest.closed_reason}")
            else:
                found.append(f"request {latest.pk} is '{latest.state}', not approved")
    artifacts = facts_mod.artifact_signatures(version)
    if not artifacts:
        found.append("the version has no artifact to verify")
    for artifact in artifacts:
        if not artifact["signature_verified"]:
            found.append(f"artifact '{artifact['name']}': {artifact['reason'] or 'unsigned'}")
    return found


def enforce(
    access: Any, version: ModelVersion, environment: str, *, rollback: bool = False
) -> None:
    """Raise GateRefused (after auditing the refusal in its own transaction) if shut.

    Call it before the deployment's own transaction starts, so the refusal event
    survives the refused write.
    """
    found = reasons(version, environment, rollback=rollback)
    if not found:
        return
    with transaction.atomic():
        record(
            AuditEvent.Action.VERIFY,
            actor=access.actor,
            obj=version,
            changes={
                "gate": "refused",
                "environment": environment,
                "rollback": rollback,
                "reasons": found,
            },
        )
    raise GateRefused(version, environment, found)
