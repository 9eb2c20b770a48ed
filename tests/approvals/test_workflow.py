"""Approval workflow rules (issue 4, acceptance 1): states, quorum, separation of duties,
expiry, voiding, policy versions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from approvals import services as approvals
from approvals.models import ApprovalPolicy, ApprovalRequest, Decision
from audits.models import AuditEvent
from portal import roles
from portal.permissions import Access
from registry import services
from registry.services import InvalidTransition
from tests import factories as f
from tests.approvals.rig import Rig, build_rig


@pytest.fixture
def rig(db: Any) -> Rig:
    return build_rig()


def _events(req: ApprovalRequest) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            object_type="approvals.approvalrequest", object_id=str(req.pk)
        ).order_by("seq")
    )


def test_request_is_judged_by_the_tier_policy_and_submitted(rig: Rig) -> None:
    req = rig.request()
    assert req.state == "submitted"
    assert req.policy.risk_tier == "high" and req.policy.environment == "production"
    assert req.policy.quorum == {"governance board": 2, "risk officer": 1}
    assert all(c["passed"] for c in req.check_results), req.check_results
    rig.mv.refresh_from_db()
    assert rig.mv.status == "in_review"
    # one create and one transition event for the request itself
    assert [e.action for e in _events(req)] == ["create", "transition"]
    # the reviewers were notified in-app
    assert rig.board1.notifications.filter(url=req.get_absolute_url()).exists()
    assert rig.risk.notifications.exists()
    assert not rig.auditor.notifications.exists()


def test_quorum_needs_every_role(rig: Rig) -> None:
    req = rig.request()
    approvals.decide(rig.access("board1"), req, verdict="approve", comment="fine")
    req.refresh_from_db()
    assert req.state == "in_review"
    approvals.decide(rig.access("board2"), req, verdict="approve", comment="fine")
    req.refresh_from_db()
    assert req.state == "in_review"  # the risk officer has not approved yet
    assert approvals.blocking_reasons(req) == ["risk officer: 0 of 1 approvals"]
    approvals.decide(rig.access("risk"), req, verdict="approve", comment="fine")
    req.refresh_from_db()
    assert req.state == "approved"
    assert req.expires_at > timezone.now() + timedelta(days=179)
    assert req.attestation is not None and req.artifact_sha256 == rig.artifact.sha256
    rig.mv.refresh_from_db()
    assert rig.mv.status == "approved"


def test_one_decision_per_reviewer_and_roles_are_required(rig: Rig) -> None:
    req = rig.request()
    approvals.decide(rig.access("board1"), req, verdict="approve", comment="fine")
    with pytest.raises(InvalidTransition, match="already decided"):
        approvals.decide(rig.access("board1"), req, verdict="approve", comment="again")
    with pytest.raises(PermissionDenied, match="needs one of the roles"):
        approvals.decide(rig.access("auditor"), req, verdict="approve", comment="me too")
    with pytest.raises(ValidationError) as exc:
        approvals.decide(rig.access("board2"), req, verdict="approve", comment="  ")
    assert "comment" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        approvals.decide(
            rig.access("board2"), req, verdict="approve", comment="x", role="risk officer"
        )
    assert "role" in exc.value.message_dict
    assert Decision.objects.filter(request=req).count() == 1


def test_reviewer_must_see_the_use_case(rig: Rig) -> None:
    req = rig.request()
    # a contributor of another use case, even one holding a policy role by group, cannot see it
    stranger = f.user(roles=(roles.CONTRIBUTOR,))
    with pytest.raises(PermissionDenied):
        approvals.decide(Access(user=stranger), req, verdict="approve", comment="x")
    assert not Decision.objects.filter(request=req).exists()


def test_separation_of_duties(rig: Rig) -> None:
    # the requester holds a board role too: still may not decide
    rig.contributor.groups.add(*rig.board1.groups.all())
    req = rig.request()
    with pytest.raises(PermissionDenied, match="separation of duties: you requested"):
        approvals.decide(rig.access("contributor"), req, verdict="approve", comment="mine")
    # the registrant (not the requester) may not decide either
    other = f.user(roles=(roles.CONTRIBUTOR,))
    rig.mv.refresh_from_db()
    services.transition_model_version(Access.system(), rig.mv, "registered")
    approvals.withdraw_request(rig.access("contributor"), req, reason="redo")
    from portal.services import grant_access

    grant_access(Access.system(), rig.uc, other, "contribute")
    req2 = approvals.create_request(Access(user=other), model_version=rig.mv)
    with pytest.raises(PermissionDenied, match="you registered this model version"):
        approvals.decide(rig.access("contributor"), req2, verdict="approve", comment="mine")


def test_minimal_tier_without_separation_lets_a_requesting_board_member_decide(db: Any) -> None:
    from tests.approvals.rig import make_version

    uc = f.use_case(risk_tier="minimal")
    member = f.user(roles=(roles.BOARD, roles.CONTRIBUTOR))
    from portal.services import grant_access

    grant_access(Access.system(), uc, member, "contribute")
    mv, _ = make_version(uc, member)
    req = approvals.create_request(Access(user=member), model_version=mv)
    assert req.policy.separation_of_duties is False
    approvals.decide(Access(user=member), req, verdict="approve", comment="small change")
    req.refresh_from_db()
    assert req.state == "approved"


def test_reject_and_request_changes_then_resubmit_starts_a_new_round(rig: Rig) -> None:
    req = rig.request()
    approvals.decide(rig.access("board1"), req, verdict="approve", comment="fine")
    approvals.decide(rig.access("board2"), req, verdict="request_changes", comment="add tests")
    req.refresh_from_db()
    assert req.state == "changes_requested"
    with pytest.raises(InvalidTransition, match="not open"):
        approvals.decide(rig.access("risk"), req, verdict="approve", comment="late")
    approvals.submit_request(rig.access("contributor"), req)
    req.refresh_from_db()
    assert req.state == "submitted" and approvals.current_round(req) == 2
    # round-1 approvals no longer count; board1 may decide again
    assert approvals.quorum_status(req)["governance board"]["have"] == 0
    approvals.decide(rig.access("board1"), req, verdict="reject", comment="no")
    req.refresh_from_db()
    assert req.state == "rejected"
    for target in ("submitted", "approved", "withdrawn"):
        assert target not in ApprovalRequest.TRANSITIONS["rejected"]
    with pytest.raises(InvalidTransition):
        approvals.submit_request(rig.access("contributor"), req)


def test_withdraw_only_while_open(rig: Rig) -> None:
    req = rig.approve_all(rig.request())
    with pytest.raises(InvalidTransition):
        approvals.withdraw_request(rig.access("contributor"), req)
    mv2_req = rig.request(environment="staging")
    approvals.withdraw_request(rig.access("contributor"), mv2_req, reason="not needed")
    mv2_req.refresh_from_db()
    assert mv2_req.state == "withdrawn" and mv2_req.closed_reason == "not needed"


def test_failing_check_blocks_approval_even_with_quorum(rig: Rig) -> None:
    services.update_model_version(
        Access.system(), rig.mv, subgroup_metrics={"age<30": {"recall": 0.7}}
    )
    req = rig.approve_all(rig.request())
    assert req.state == "in_review"
    assert "check 'no subgroup's recall below 0.8' fails (false)" in approvals.blocking_reasons(req)


def test_expiry(rig: Rig) -> None:
    req = rig.approve_all(rig.request())
    assert approvals.expire_approvals(now=req.expires_at - timedelta(seconds=1)) == 0
    assert approvals.expire_approvals(now=req.expires_at + timedelta(seconds=1)) == 1
    req.refresh_from_db()
    assert req.state == "expired" and req.closed_reason == "expired"


@pytest.mark.parametrize(
    "change",
    ["card", "metrics", "evidence", "artifact", "datasets", "signature"],
)
def test_any_change_after_approval_voids_it(rig: Rig, change: str) -> None:
    req = rig.approve_all(rig.request())
    system = Access.system()
    if change == "card":
        services.update_model_version(system, rig.mv, limitations="Now also: new markets.")
    elif change == "metrics":
        services.update_model_version(system, rig.mv, metrics={"auc": 0.95})
    elif change == "evidence":
        f.evidence(rig.mv, kind="red_team")
    elif change == "artifact":
        f.artifact(rig.mv, name="model-v2.onnx")
    elif change == "datasets":
        services.update_model_version(system, rig.mv, training_datasets=[f.dataset_version()])
    else:
        from registry.signing import sign_artifact_as_portal

        sign_artifact_as_portal(system, rig.artifact, "https://slsa.dev/provenance/v1", {"r": 2})
    req.refresh_from_db()
    assert req.state == "superseded"
    assert req.closed_reason.startswith("voided: ")


def test_unrelated_status_change_does_not_void(rig: Rig) -> None:
    req = rig.approve_all(rig.request())
    rig.mv.refresh_from_db()
    services.transition_model_version(Access.system(), rig.mv, "deployed")
    req.refresh_from_db()
    assert req.state == "approved"


def test_a_newer_approval_supersedes_the_older_one(rig: Rig) -> None:
    first = rig.request(environment="staging")
    assert first.policy.quorum == {"risk officer": 1}
    approvals.decide(rig.access("risk"), first, verdict="approve", comment="staging ok")
    first.refresh_from_db()
    assert first.state == "approved"
    rig.mv.refresh_from_db()
    services.transition_model_version(Access.system(), rig.mv, "registered")
    second = rig.request(environment="staging")
    risk2 = f.user(roles=(roles.RISK_OFFICER,))
    approvals.decide(Access(user=risk2), second, verdict="approve", comment="again")
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.state == "approved"
    assert first.state == "superseded" and f"request {second.pk}" in first.closed_reason


def test_policies_are_versioned_and_requests_keep_theirs(rig: Rig) -> None:
    req = rig.request()
    v1 = req.policy
    with pytest.raises(PermissionDenied):
        approvals.update_policy(rig.access("contributor"), v1, validity_days=30)
    v2 = approvals.update_policy(rig.access("risk"), v1, validity_days=30)
    assert (v2.version, v2.active, v2.validity_days) == (v1.version + 1, True, 30)
    v1.refresh_from_db()
    assert v1.active is False
    req.refresh_from_db()
    assert req.policy_id == v1.pk
    assert approvals.active_policy("high", "production") == v2
    with pytest.raises(ValidationError) as exc:
        approvals.update_policy(
            rig.access("risk"), v2, checks=[{"name": "bad", "expression": "metrics.auc >="}]
        )
    assert "check 'bad': not valid CEL" in exc.value.message_dict["checks"][0]
    with pytest.raises(ValidationError) as exc:
        approvals.update_policy(rig.access("risk"), v2, quorum={"viewer": 1})
    assert "quorum" in exc.value.message_dict
    assert ApprovalPolicy.objects.filter(risk_tier="high", environment="production").count() == 2


def test_intake_approval_moves_the_use_case(db: Any) -> None:
    uc = f.use_case(risk_tier="limited", risk_rationale="Customer-facing text.")
    owner = f.user(roles=(roles.CONTRIBUTOR,))
    from portal.services import grant_access

    grant_access(Access.system(), uc, owner, "contribute")
    req = approvals.create_request(Access(user=owner), use_case=uc)
    assert req.kind == "intake" and req.policy.environment == "intake"
    board = f.user(roles=(roles.BOARD,))
    approvals.decide(Access(user=board), req, verdict="approve", comment="go")
    req.refresh_from_db()
    uc.refresh_from_db()
    assert req.state == "approved" and uc.status == "approved"


def test_periodic_review_opens_when_due_and_is_signed_off(db: Any) -> None:
    uc = f.use_case(review_cadence_days=90)
    system = Access.system()
    for status in ("assessed", "approved"):
        services.transition_use_case(system, uc, status)
    services.update_use_case(system, uc, next_review_date=timezone.localdate() - timedelta(days=1))
    board = f.user(roles=(roles.BOARD,), email="b@example.org")
    assert approvals.open_due_reviews() == 1
    assert approvals.open_due_reviews() == 0  # not twice
    uc.refresh_from_db()
    assert uc.status == "under_review"
    assert board.notifications.filter(text__startswith="Periodic review due").exists()
    review = uc.reviews.get()
    with pytest.raises(PermissionDenied):
        approvals.sign_off_review(Access(user=f.user()), review, notes="ok")
    approvals.sign_off_review(Access(user=board), review, notes="still fit for purpose")
    uc.refresh_from_db()
    assert uc.status == "approved"
    assert uc.next_review_date == timezone.localdate() + timedelta(days=90)


def test_reviewers_are_emailed_once_the_request_commits(
    rig: Rig, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    for u, address in ((rig.board1, "b1@example.org"), (rig.risk, "risk@example.org")):
        u.email = address
        u.save()
    with django_capture_on_commit_callbacks(execute=True):
        req = rig.request()
    (mail,) = mailoutbox
    assert sorted(mail.to) == ["b1@example.org", "risk@example.org"]
    assert "Approval requested" in mail.subject
    assert req.get_absolute_url() in mail.body
