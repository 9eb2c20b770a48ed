"""The approval workflow's service layer: every write is audited in its transaction.

Policies are versioned (an edit creates the next version); requests are judged
by the version they were submitted under. A request is approved when every
role's quorum is met in the current round, every check passes and the
required evidence is present; the approval is then signed by the portal as an
in-toto attestation over the version's artifact digests, and voided if
anything it vouched for changes (approvals/signals.py, gate.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from approvals import facts as facts_mod
from approvals import policy as policy_mod
from approvals.models import ApprovalPolicy, ApprovalRequest, Decision, Notification, PeriodicReview
from approvals.signals import approval_closed
from audits.models import AuditEvent
from audits.services import record
from portal import dsse, roles
from portal import keys as portal_keys
from portal.permissions import Access, role_names
from registry import services as registry_services
from registry.models import ModelVersion, RiskTier, UseCase
from registry.services import InvalidTransition, snapshot

logger = logging.getLogger(__name__)
APPROVAL_PREDICATE = "https://charter.dev/attestations/approval/v1"
POLICY_FIELDS = (
    "name",
    "description",
    "quorum",
    "required_evidence",
    "checks",
    "validity_days",
    "separation_of_duties",
    "rollback_without_approval",
)


class RequestStateError(InvalidTransition):
    """A workflow step the request's state does not allow (HTTP 409)."""

    def __init__(self, req: ApprovalRequest, target: str, message: str = "") -> None:
        self.field = "state"
        self.current, self.target = req.state, target
        self.allowed = sorted(req.TRANSITIONS.get(req.state, ()))
        Exception.__init__(
            self, message or f"approval request cannot go from '{req.state}' to '{target}'"
        )


# ---------------------------------------------------------------- helpers


def user_roles(user: Any) -> set[str]:
    return set(role_names(user))


def can_edit_policies(access: Access) -> bool:
    return (
        access.is_system
        or access.can_administer()
        or roles.RISK_OFFICER in user_roles(access.actor)
    )


def _validate_policy_data(data: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    quorum = data.get("quorum")
    if quorum is not None:
        if not isinstance(quorum, dict) or not quorum:
            errors["quorum"] = ["must map role names to the number of approvals needed"]
        else:
            for role, count in quorum.items():
                if role not in roles.ALL or role in (roles.VIEWER, roles.CONTRIBUTOR):
                    errors["quorum"] = [f"'{role}' is not a reviewing role"]
                elif not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 20:
                    errors["quorum"] = [f"'{role}' needs a whole number of approvals (1-20)"]
    evidence = data.get("required_evidence")
    if evidence is not None:
        from registry.models import Evidence

        kinds = set(Evidence.Kind.values)
        if not isinstance(evidence, list) or any(k not in kinds for k in evidence):
            errors["required_evidence"] = [f"must be a list of evidence kinds: {sorted(kinds)}"]
    if errors:
        raise ValidationError(errors)
    if "checks" in data:
        data["checks"] = policy_mod.validate_checks(data["checks"])
    return data


def active_policy(risk_tier: str, environment: str) -> ApprovalPolicy | None:
    return (
        ApprovalPolicy.objects.filter(risk_tier=risk_tier, environment=environment, active=True)
        .order_by("-version")
        .first()
    )


def notify(users: Any, text: str, url: str = "", use_case: UseCase | None = None) -> None:
    """In-app notification plus an email (console backend in the embedded default)."""
    users = [u for u in users if u is not None]
    Notification.objects.bulk_create(
        [Notification(user=u, text=text[:500], url=url, use_case=use_case) for u in users]
    )
    recipients = sorted({u.email for u in users if u.email})
    if recipients:
        body = f"{text}\n\n{settings.CHARTER_BASE_URL.rstrip('/')}{url}"
        transaction.on_commit(lambda: _send(f"[Charter] {text[:120]}", body, recipients))


def _send(subject: str, body: str, recipients: list[str]) -> None:
    """Mail after commit; a mail server that is down must not undo the decision."""
    try:
        send_mail(subject, body, None, recipients)
    except OSError:
        logger.warning("notification mail to %s failed", ", ".join(recipients), exc_info=True)


def reviewers_for(req: ApprovalRequest) -> list[Any]:
    """Users holding a quorum role who may see the request's use case."""
    user_model = get_user_model()
    candidates = user_model.objects.filter(
        groups__name__in=list(req.policy.quorum), is_active=True
    ).distinct()
    return [u for u in candidates if Access(u).can_view(req.use_case)]


# ---------------------------------------------------------------- policies


@transaction.atomic
def create_policy(access: Access, **data: Any) -> ApprovalPolicy:
    if not can_edit_policies(access):
        raise PermissionDenied("only risk officers and admins edit approval policies")
    data = _validate_policy_data(dict(data))
    tier, env = data.get("risk_tier"), data.get("environment")
    latest = ApprovalPolicy.objects.filter(risk_tier=tier, environment=env).order_by("-version")
    previous = latest.first()
    policy = ApprovalPolicy(**data, version=(previous.version + 1) if previous else 1)
    policy.created_by = access.actor if access.authenticated else None
    policy.full_clean()
    if previous is not None and previous.active:
        previous.active = False
        previous.save(update_fields=["active"])
    policy.save()
    record(
        AuditEvent.Action.CREATE,
        actor=access.actor,
        obj=policy,
        changes={"after": snapshot(policy)},
    )
    return policy


@transaction.atomic
def update_policy(access: Access, policy: ApprovalPolicy, **data: Any) -> ApprovalPolicy:
    """Edit = a new version with the changes; the old version stays for its requests."""
    unknown = set(data) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError(
            {name: ["cannot be changed; create a policy instead"] for name in unknown}
        )
    base = {f: getattr(policy, f) for f in POLICY_FIELDS}
    base.update(data)
    return create_policy(access, risk_tier=policy.risk_tier, environment=policy.environment, **base)


# ---------------------------------------------------------------- requests


def _evaluate(req: ApprovalRequest) -> list[dict[str, Any]]:
    if req.model_version_id:
        facts = facts_mod.gather(req.model_version, req.environment)
    else:
        facts = facts_mod.gather_intake(req.use_case)
    results = [r.as_dict() for r in policy_mod.evaluate(req.policy.checks, facts)]
    for kind in req.policy.required_evidence:
        present = kind in facts["evidence_types"]
        results.append(
            {
                "name": f"evidence: {kind}",
                "expression": f"'{kind}' in evidence_types",
                "passed": present,
                "detail": "present" if present else "missing",
                "required_evidence": True,
            }
        )
    return results


def evaluate_checks(req: ApprovalRequest) -> list[dict[str, Any]]:
    """Re-run the policy's checks for the request and store the results (not audited:
    derived data, not a decision)."""
    results = _evaluate(req)
    now = timezone.now()
    ApprovalRequest.objects.filter(pk=req.pk).update(check_results=results, checked_at=now)
    req.check_results, req.checked_at = results, now
    return results


@transaction.atomic
def create_request(
    access: Access,
    *,
    model_version: ModelVersion | None = None,
    use_case: UseCase | None = None,
    environment: str = "production",
    summary: str = "",
    submit: bool = True,
    kind: str | None = None,
) -> ApprovalRequest:
    """A release request (``model_version``), a use-case intake request (``use_case``), or,
    with ``kind="retraining"``, a request to run a retraining job on ``use_case``."""
    if kind == ApprovalRequest.Kind.RETRAINING:
        if use_case is None or model_version is not None:
            raise ValidationError({"use_case": ["a retraining request names the use case only"]})
        environment = ApprovalPolicy.RETRAINING
    elif model_version is not None:
        use_case = model_version.use_case
        kind = ApprovalRequest.Kind.RELEASE
    elif use_case is not None:
        kind, environment = ApprovalRequest.Kind.INTAKE, ApprovalPolicy.INTAKE
    else:
        raise ValidationError({"model_version": ["a model version (or a use case) is required"]})
    access.require_contribute(use_case)
    policy = active_policy(use_case.risk_tier, environment)
    if policy is None:
        raise ValidationError(
            {
                "environment": [
                    f"no approval policy for risk tier '{use_case.risk_tier}' "
                    f"and environment '{environment}'"
                ]
            }
        )
    if use_case.risk_tier == RiskTier.UNACCEPTABLE and kind == ApprovalRequest.Kind.RELEASE:
        raise ValidationError(
            {"model_version": ["use cases of unacceptable risk cannot be released"]}
        )
    open_same = ApprovalRequest.objects.filter(
        use_case=use_case,
        model_version=model_version,
        environment=environment,
        state__in=["draft", "submitted", "in_review", "changes_requested"],
    )
    if kind != ApprovalRequest.Kind.RETRAINING and open_same.exists():
        raise ValidationError(
            {"model_version": [f"request {open_same.first().pk} for this is still open"]}
        )
    req = ApprovalRequest(
        kind=kind,
        use_case=use_case,
        model_version=model_version,
        environment=environment,
        policy=policy,
        summary=summary,
        requested_by=access.actor if access.authenticated else None,
    )
    req.full_clean()
    req.save()
    record(AuditEvent.Action.CREATE, actor=access.actor, obj=req, changes={"after": snapshot(req)})
    if submit:
        req = submit_request(access, req)
    return req


def _move(
    access: Access, req: ApprovalRequest, target: str, reason: str = "", **extra: Any
) -> None:
    current = req.state
    if target not in req.TRANSITIONS.get(current, ()):
        raise RequestStateError(req, target)
    req.state = target
    for name, value in extra.items():
        setattr(req, name, value)
    req.save(update_fields=["state", *extra])
    record(
        AuditEvent.Action.TRANSITION,
        actor=access.actor,
        obj=req,
        changes={
            "before": {"state": current},
            "after": {"state": target, **{k: v for k, v in extra.items() if k != "attestation"}},
            "reason": reason,
        },
    )


@transaction.atomic
def submit_request(access: Access, req: ApprovalRequest) -> ApprovalRequest:
    access.require_contribute(req.use_case)
    req = ApprovalRequest.objects.select_for_update().get(pk=req.pk)
    _move(access, req, ApprovalRequest.State.SUBMITTED, submitted_at=timezone.now())
    if req.model_version_id and req.model_version.status == ModelVersion.Status.REGISTERED:
        registry_services.transition_model_version(
            access,
            req.model_version,
            ModelVersion.Status.IN_REVIEW,
            reason=f"approval request {req.pk}",
        )
    evaluate_checks(req)
    notify(
        reviewers_for(req),
        f"Approval requested: {req}",
        req.get_absolute_url(),
        req.use_case,
    )
    return req


@transaction.atomic
def withdraw_request(access: Access, req: ApprovalRequest, *, reason: str = "") -> ApprovalRequest:
    access.require_contribute(req.use_case)
    req = ApprovalRequest.objects.select_for_update().get(pk=req.pk)
    _move(access, req, ApprovalRequest.State.WITHDRAWN, reason, closed_reason=reason)
    approval_closed.send(sender=ApprovalRequest, request=req)
    return req


def current_round(req: ApprovalRequest) -> int:
    """Decisions count per round: a resubmission after 'changes requested' starts anew."""
    rounds = AuditEvent.objects.filter(
        object_type="approvals.approvalrequest",
        object_id=str(req.pk),
        action=AuditEvent.Action.TRANSITION,
        changes__after__state="submitted",
    ).count()
    return max(rounds, 1)


def quorum_status(req: ApprovalRequest, round_: int | None = None) -> dict[str, dict[str, int]]:
    round_ = round_ or current_round(req)
    approvals = Decision.objects.filter(
        request=req, round=round_, verdict=Decision.Verdict.APPROVE
    ).values_list("role", flat=True)
    got: dict[str, int] = {}
    for role in approvals:
        got[role] = got.get(role, 0) + 1
    return {role: {"needed": n, "have": got.get(role, 0)} for role, n in req.policy.quorum.items()}


def separation_applies(req: ApprovalRequest) -> bool:
    return req.policy.separation_of_duties or req.use_case.risk_tier in (
        RiskTier.HIGH,
        RiskTier.UNACCEPTABLE,
    )


def conflicted(req: ApprovalRequest, user: Any) -> str | None:
    """Why ``user`` may not decide on ``req`` under separation of duties, or None."""
    if not separation_applies(req):
        return None
    if req.requested_by_id == user.pk:
        return "you requested this approval"
    if req.model_version_id and req.model_version.registered_by_id == user.pk:
        return "you registered this model version"
    return None


@transaction.atomic
def decide(
    access: Access,
    req: ApprovalRequest,
    *,
    verdict: str,
    comment: str,
    role: str | None = None,
) -> Decision:
    user = access.actor
    if user is None or not user.is_authenticated:
        raise PermissionDenied("decisions are made by people, not service accounts")
    access.require_view(req.use_case)
    req = ApprovalRequest.objects.select_for_update().get(pk=req.pk)
    if verdict not in Decision.Verdict.values:
        raise ValidationError({"verdict": [f"must be one of {', '.join(Decision.Verdict.values)}"]})
    if not str(comment).strip():
        raise ValidationError({"comment": ["a decision needs a comment"]})
    if not req.is_open:
        raise RequestStateError(req, "decided", f"request is '{req.state}', not open for decisions")
    held = user_roles(user) & set(req.policy.quorum)
    if not held:
        raise PermissionDenied(
            f"deciding needs one of the roles {', '.join(sorted(req.policy.quorum))}"
        )
    if role is None:
        role = sorted(held)[0]
    elif role not in held:
        raise ValidationError({"role": [f"you do not hold the role '{role}' for this policy"]})
    why = conflicted(req, user)
    if why is not None:
        raise PermissionDenied(f"separation of duties: {why}")
    round_ = current_round(req)
    if Decision.objects.filter(request=req, reviewer=user, round=round_).exists():
        raise RequestStateError(req, "decided", "you have already decided on this request")
    decision = Decision.objects.create(
        request=req,
        use_case=req.use_case,
        reviewer=user,
        role=role,
        verdict=verdict,
        comment=comment.strip(),
        round=round_,
    )
    record(
        AuditEvent.Action.CREATE,
        actor=user,
        obj=decision,
        changes={
            "after": {
                "request": req.pk,
                "verdict": verdict,
                "role": role,
                "comment": decision.comment,
                "round": round_,
            }
        },
    )
    if verdict == Decision.Verdict.REJECT:
        _move(access, req, ApprovalRequest.State.REJECTED, comment, decided_at=timezone.now())
        notify([req.requested_by], f"Rejected: {req}", req.get_absolute_url(), req.use_case)
        approval_closed.send(sender=ApprovalRequest, request=req)
    elif verdict == Decision.Verdict.REQUEST_CHANGES:
        _move(access, req, ApprovalRequest.State.CHANGES_REQUESTED, comment)
        notify(
            [req.requested_by], f"Changes requested: {req}", req.get_absolute_url(), req.use_case
        )
    else:
        if req.state == ApprovalRequest.State.SUBMITTED:
            _move(access, req, ApprovalRequest.State.IN_REVIEW)
        try_complete(access, req)
    return decision


def blocking_reasons(req: ApprovalRequest) -> list[str]:
    """Why the request is not approved yet (quorum and checks); empty when it can be."""
    reasons = []
    for role, status in quorum_status(req).items():
        if status["have"] < status["needed"]:
            reasons.append(f"{role}: {status['have']} of {status['needed']} approvals")
    for check in req.check_results:
        if not check["passed"]:
            reasons.append(f"check '{check['name']}' fails ({check['detail']})")
    return reasons


def try_complete(access: Access, req: ApprovalRequest) -> bool:
    """Approve the request if quorum and checks allow (re-evaluating the checks now)."""
    evaluate_checks(req)
    if blocking_reasons(req):
        return False
    now = timezone.now()
    expires = now + timedelta(days=req.policy.validity_days)
    extra: dict[str, Any] = {"decided_at": now, "expires_at": expires}
    if req.model_version_id:
        version = req.model_version
        extra["fingerprint"] = facts_mod.fingerprint(version)
        artifacts = list(version.artifacts.values_list("name", "sha256"))
        extra["artifact_sha256"] = artifacts[0][1] if artifacts else ""
        extra["attestation"] = _sign_approval(req, artifacts, now, expires)
    _move(access, req, ApprovalRequest.State.APPROVED, "quorum met and every check passes", **extra)
    # an earlier approval for the same version and environment is superseded
    for old in ApprovalRequest.objects.filter(
        model_version=req.model_version,
        use_case=req.use_case,
        environment=req.environment,
        state=ApprovalRequest.State.APPROVED,
    ).exclude(pk=req.pk):
        _move(
            access,
            old,
            ApprovalRequest.State.SUPERSEDED,
            f"superseded by request {req.pk}",
            closed_reason=f"superseded by request {req.pk}",
        )
    system = Access.system()
    if req.model_version_id:
        version = ModelVersion.objects.get(pk=req.model_version_id)
        if version.status == ModelVersion.Status.REGISTERED:
            registry_services.transition_model_version(system, version, "in_review")
        if version.status == ModelVersion.Status.IN_REVIEW:
            registry_services.transition_model_version(
                system, version, ModelVersion.Status.APPROVED, reason=f"approval request {req.pk}"
            )
    elif req.kind == ApprovalRequest.Kind.RETRAINING:
        pass  # the job waiting for it is released on approval_closed (workers)
    else:
        uc = UseCase.objects.get(pk=req.use_case_id)
        if uc.status == UseCase.Status.PROPOSED:
            registry_services.transition_use_case(system, uc, UseCase.Status.ASSESSED)
        if uc.status == UseCase.Status.ASSESSED:
            registry_services.transition_use_case(
                system, uc, UseCase.Status.APPROVED, reason=f"intake request {req.pk}"
            )
    notify([req.requested_by], f"Approved: {req}", req.get_absolute_url(), req.use_case)
    approval_closed.send(sender=ApprovalRequest, request=req)
    return True


def _sign_approval(
    req: ApprovalRequest, artifacts: list[tuple[str, str]], when: Any, expires: Any
) -> dict[str, Any]:
    """The approval as an in-toto Statement over the artifact digests, signed by the portal."""
    key = portal_keys.portal_key()
    decisions = [
        {
            "reviewer": d.reviewer.get_username(),
            "role": d.role,
            "verdict": d.verdict,
            "comment": d.comment,
            "at": d.created_at.isoformat(),
        }
        for d in req.decisions.filter(round=current_round(req)).select_related("reviewer")
    ]
    predicate = {
        "request": req.pk,
        "use_case": {"id": req.use_case_id, "name": req.use_case.name},
        "model_version": {
            "id": req.model_version_id,
            "model": req.model_version.model.name,
            "version": req.model_version.version,
        },
        "environment": req.environment,
        "policy": {
            "id": req.policy_id,
            "name": req.policy.name,
            "version": req.policy.version,
            "risk_tier": req.policy.risk_tier,
        },
        "checks": req.check_results,
        "decisions": decisions,
        "approved_at": when.isoformat(),
        "expires_at": expires.isoformat(),
    }
    stmt = dsse.statement(artifacts, APPROVAL_PREDICATE, predicate)
    return dsse.sign_statement(stmt, key.key_id, key.sign)


@transaction.atomic
def void_approvals(version: ModelVersion, reason: str) -> int:
    """Approvals of ``version`` whose fingerprint no longer matches become superseded."""
    approved = list(
        ApprovalRequest.objects.select_for_update().filter(
            model_version=version, state=ApprovalRequest.State.APPROVED
        )
    )
    if not approved:
        return 0
    current = facts_mod.fingerprint(version)
    voided = 0
    for req in approved:
        if req.fingerprint and req.fingerprint != current:
            _move(
                Access.system(),
                req,
                ApprovalRequest.State.SUPERSEDED,
                f"voided: {reason}",
                closed_reason=f"voided: {reason}",
            )
            voided += 1
    return voided


@transaction.atomic
def expire_approvals(now: Any = None) -> int:
    now = now or timezone.now()
    due = ApprovalRequest.objects.select_for_update().filter(
        state=ApprovalRequest.State.APPROVED, expires_at__lte=now
    )
    count = 0
    for req in due:
        _move(
            Access.system(),
            req,
            ApprovalRequest.State.EXPIRED,
            "validity period ended",
            closed_reason="expired",
        )
        count += 1
    return count


# ---------------------------------------------------------------- periodic reviews


def _has_live(use_case: UseCase) -> bool:
    from registry.models import Deployment

    return Deployment.objects.filter(use_case=use_case, status=Deployment.Status.ACTIVE).exists()


def _owners(use_case: UseCase) -> list[Any]:
    return [u for u in (use_case.business_owner, use_case.technical_owner) if u is not None]


def _board() -> list[Any]:
    return list(get_user_model().objects.filter(groups__name=roles.BOARD, is_active=True))


@transaction.atomic
def open_due_reviews(today: Any = None) -> int:
    """Open a review for every use case whose review date has come (Celery beat, daily)."""
    today = today or timezone.localdate()
    system = Access.system()
    opened = 0
    due = (
        UseCase.objects.select_for_update()
        .filter(
            next_review_date__lte=today,
            status__in=[
                UseCase.Status.APPROVED,
                UseCase.Status.IN_PRODUCTION,
                UseCase.Status.UNDER_REVIEW,
            ],
        )
        .exclude(reviews__state=PeriodicReview.State.OPEN)
    )
    for uc in due:
        previous = uc.status
        if previous == UseCase.Status.UNDER_REVIEW:  # put under review by hand before
            previous = UseCase.Status.IN_PRODUCTION if _has_live(uc) else UseCase.Status.APPROVED
        review = PeriodicReview.objects.create(
            use_case=uc, due_date=uc.next_review_date, previous_status=previous
        )
        record(
            AuditEvent.Action.CREATE, actor=None, obj=review, changes={"after": snapshot(review)}
        )
        if uc.status != UseCase.Status.UNDER_REVIEW:
            registry_services.transition_use_case(
                system, uc, UseCase.Status.UNDER_REVIEW, reason=f"periodic review {review.pk} due"
            )
        notify(_owners(uc) + _board(), f"Periodic review due: {uc}", uc.get_absolute_url(), uc)
        opened += 1
    return opened


@transaction.atomic
def sign_off_review(access: Access, review: PeriodicReview, *, notes: str) -> PeriodicReview:
    user = access.actor
    access.require_view(review.use_case)
    if not user_roles(user) & {roles.BOARD, roles.RISK_OFFICER, roles.ADMIN}:
        raise PermissionDenied("reviews are signed off by the board, risk officers or admins")
    if not notes.strip():
        raise ValidationError({"notes": ["sign-off needs notes"]})
    review = PeriodicReview.objects.select_for_update().get(pk=review.pk)
    if review.state != PeriodicReview.State.OPEN:
        raise ValidationError({"state": ["this review is already signed off"]})
    review.state = PeriodicReview.State.SIGNED_OFF
    review.signed_off_by, review.signed_off_at, review.notes = user, timezone.now(), notes.strip()
    review.save()
    record(
        AuditEvent.Action.UPDATE,
        actor=user,
        obj=review,
        changes={"after": {"state": review.state, "notes": review.notes}},
    )
    uc = UseCase.objects.get(pk=review.use_case_id)
    system = Access.system()
    if uc.status == UseCase.Status.UNDER_REVIEW:
        registry_services.transition_use_case(
            system, uc, review.previous_status, reason=f"review {review.pk} signed off"
        )
    next_date = timezone.localdate() + timedelta(days=uc.review_cadence_days)
    registry_services.update_use_case(system, uc, next_review_date=next_date)
    return review
