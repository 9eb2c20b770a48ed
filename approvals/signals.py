"""Void approvals when what they vouched for changes (the gate re-checks too)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_save
from django.dispatch import Signal

from registry.models import Artifact, Attestation, Evidence, ModelVersion
from registry.services import CREATING

#: Sent inside the deciding transaction when a request is approved, rejected or withdrawn
#: (``request=`` the ApprovalRequest). Other apps act on their own requests with it (a
#: retraining job waits for its approval: workers/retraining_signals.py).
approval_closed = Signal()


def _void(version_id: int | None, reason: str) -> None:
    if version_id is None:
        return
    from approvals.models import ApprovalRequest
    from approvals.services import void_approvals

    if not ApprovalRequest.objects.filter(model_version_id=version_id, state="approved").exists():
        return
    version = ModelVersion.objects.get(pk=version_id)
    void_approvals(version, reason)


def _on_version(sender: Any, instance: ModelVersion, created: bool, **kwargs: Any) -> None:
    if not created:
        _void(instance.pk, "the model version changed")


def _on_artifact(sender: Any, instance: Artifact, **kwargs: Any) -> None:
    _void(instance.model_version_id, f"artifact '{instance.name}' was added or changed")


def _on_evidence(sender: Any, instance: Evidence, **kwargs: Any) -> None:
    _void(instance.model_version_id, f"evidence '{instance.title}' was added or changed")


def _on_attestation(sender: Any, instance: Attestation, **kwargs: Any) -> None:
    if instance.artifact_id:
        _void(instance.artifact.model_version_id, "an artifact signature was added")
    elif instance.evidence_id:
        _void(instance.evidence.model_version_id, "an evidence signature was added")


def _on_datasets(sender: Any, instance: Any, action: str, **kwargs: Any) -> None:
    if not action.startswith("post_") or not isinstance(instance, ModelVersion):
        return
    if getattr(instance, CREATING, False):
        return  # being registered in this transaction: nothing can have approved it yet
    _void(instance.pk, "the model version's datasets changed")


post_save.connect(_on_version, sender=ModelVersion, dispatch_uid="approvals-void-version")
post_save.connect(_on_artifact, sender=Artifact, dispatch_uid="approvals-void-artifact")
post_save.connect(_on_evidence, sender=Evidence, dispatch_uid="approvals-void-evidence")
post_save.connect(_on_attestation, sender=Attestation, dispatch_uid="approvals-void-attestation")
for _role in ("training_datasets", "validation_datasets", "test_datasets"):
    m2m_changed.connect(
        _on_datasets,
        sender=getattr(ModelVersion, _role).through,
        dispatch_uid=f"approvals-void-{_role}",
    )
