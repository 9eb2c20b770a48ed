"""The closed loop with a real Celery worker on Redis and the local executor: telemetry
drifts, the alert rule opens an incident and asks for retraining, the high-risk use case's
retraining policy wants a risk officer's go, the job runs examples/retrain/ against the live
portal, and its new model version arrives with lineage to its data and parent, a verified
signature and evidence, and an open approval request."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from approvals import services as approvals
from approvals.models import ApprovalRequest
from audits.models import AuditEvent
from portal import roles
from portal.models import ApiToken
from portal.permissions import Access
from registry.models import Attestation, ModelVersion
from tests import factories as f
from tests.monitoring import rig as telemetry
from tests.retraining import rig
from tests.worker import celery_worker, wait_for
from workers import services
from workers.models import AlertRule, Incident, RetrainingJob, TelemetryBatch
from workers.tasks import evaluate_closed_windows

FAST_POLLS = {"CHARTER_RETRAINING_POLL_BASE_S": "0.5", "CHARTER_RETRAINING_POLL_MAX_S": "2"}


def _job() -> RetrainingJob | None:
    return RetrainingJob.objects.order_by("pk").last()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_drift_to_a_new_version_awaiting_approval(live_server: Any, settings: Any) -> None:
    w = rig.world(risk_tier="high")
    telemetry.install_reference(w.dataset_version)
    rig.template(w)
    rule = services.create_alert_rule(
        Access.system(),
        w.deployment,
        name="Income drift",
        kind=AlertRule.Kind.DRIFT,
        feature="income",
        severity="high",
        action=AlertRule.Action.RETRAIN,
    )
    admin = APIClient()
    admin.force_authenticate(f.user(roles=(roles.ADMIN,)))
    env = {**FAST_POLLS, "CHARTER_JOB_PORTAL_URL": live_server.url}
    with celery_worker(extra_env=env):
        body = {
            **telemetry.rows(600, seed=3, income_factor=1.8),
            "timestamp": telemetry.hours_ago(3),
        }
        response = telemetry.post(admin, w.deployment, body)
        assert response.status_code == 202, response.json()
        assert wait_for(
            lambda: TelemetryBatch.objects.filter(folded_at__isnull=False).exists(), timeout=60
        ), "the worker did not fold the telemetry"
        evaluate_closed_windows.delay()  # what Celery beat does every five minutes
        assert wait_for(lambda: _job() is not None, timeout=60), "no retraining job requested"
        job = _job()
        incident = Incident.objects.get(rule=rule)
        assert job.incident == incident and job.trigger == "incident"
        assert job.state == "awaiting_approval" and job.base_version == w.base
        assert job.approval.kind == ApprovalRequest.Kind.RETRAINING and job.approval.is_open

        # the high-risk retraining policy: a risk officer lets the job run
        approvals.decide(
            Access(user=w.risk), job.approval, verdict="approve", comment="Retrain on fresh data."
        )
        done = wait_for(
            lambda: RetrainingJob.objects.get(pk=job.pk).is_final, timeout=180, interval=0.5
        )
        job.refresh_from_db()
        assert done, f"job is {job.state}; log:\n{job.log_tail}"
    assert job.state == "succeeded", f"{job.message}\n{job.log_tail}"
    assert job.exit_code == 0 and job.progress == 1.0
    assert "handed to Charter for approval" in job.log_tail

    # the new version: lineage to its parent and data, parameters, code, metrics
    new = job.produced_version
    assert new.parent == w.base and new.model == w.model
    assert list(new.training_datasets.all()) == [w.dataset_version]
    assert new.registered_by == job.account and new.version == f"1.0-rt{job.pk}"
    assert {"accuracy", "auc", "recall"} <= set(new.metrics)
    assert set(new.subgroup_metrics) == {"north", "south", "east", "west"}
    assert new.parameters["subgroup"] == "region" and new.code_commit
    assert not new.model_card_missing  # carried over from the parent
    # its artifact signed by the job's own key, verified on receipt
    (artifact,) = new.artifacts.all()
    (att,) = Attestation.objects.filter(artifact=artifact)
    assert att.verdict == "verified" and att.signer_key.owner == job.account
    assert job.result["signature_verified"] is True
    assert set(new.evidence.values_list("kind", flat=True)) == {
        "validation_report",
        "bias_evaluation",
    }
    assert all(
        e.attestations.get().verdict == "verified" for e in new.evidence.all()
    )  # evidence signed too
    # OpenLineage START/COMPLETE were emitted (accepted where the portal has the intake)
    assert [e["eventType"] for e in job.result["lineage"]] == ["START", "COMPLETE"]

    # the approval request Charter opened for it
    req = job.release_approval
    assert req.model_version == new and req.environment == "production"
    assert req.state == "submitted" and req.is_open
    assert ModelVersion.objects.get(pk=new.pk).status == "in_review"
    checks = {c["name"]: c["passed"] for c in req.check_results}
    assert checks["artifact signature verified"] is True
    assert checks["evidence: bias_evaluation"] is True

    # the job's token is revoked and its grant withdrawn now that it has ended
    assert not ApiToken.objects.filter(user=job.account, revoked_at__isnull=True).exists()
    assert not Access(user=job.account).can_contribute(w.uc)

    # every state change audited once, in order
    transitions = [
        e.changes["after"]["state"]
        for e in AuditEvent.objects.filter(
            object_type="workers.retrainingjob", object_id=str(job.pk), action="transition"
        ).order_by("seq")
    ]
    assert transitions[0] == "pending" and transitions[-1] == "succeeded"
    assert "queued" in transitions and transitions.count("succeeded") == 1
    # the incident tells the story
    texts = " | ".join(incident.events.values_list("text", flat=True))
    assert f"retraining job #{job.pk} requested" in texts
    assert f"produced {new}" in texts and f"#{req.pk} opened" in texts
