"""Retraining jobs: request, approve, submit, follow, cancel, take the result back.

Every change of a job's state is written with its audit event in one transaction, like every
other governance fact. The executor is called outside any transaction (it is remote I/O) and
its answer applied under a row lock, so two workers that poll the same job at once, or a poll
redelivered after a worker died, record a transition once.

A job runs as its own service account (``retraining-job-<id>``) holding ``contribute`` on the
job's use case only, with a token scoped to that use case and expiring with the job's time
limit (plus ``CHARTER_JOB_TOKEN_MARGIN_S``). With it the job posts its progress and result to
its own endpoints (``/api/v1/retraining-jobs/<id>/progress/`` and ``…/result/``, which accept
no other token), registers its signing key, the new model version, its artifact, evidence and
OpenLineage events. When the job ends, the token is revoked and the grant withdrawn.

Polling: each poll is a Celery task carrying the job's ``poll_seq``; it schedules the next one
(``CHARTER_RETRAINING_POLL_BASE_S``, doubled while nothing changes, at most
``CHARTER_RETRAINING_POLL_MAX_S``) and bumps the sequence, so a duplicate delivery finds a
newer sequence and stops. ``poll_overdue_jobs`` (Celery beat) re-queues a poll for any active
job whose next poll is overdue, so a lost message loses no job. A job its executor no longer
knows becomes ``lost`` and opens an incident.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audits.models import AuditEvent
from audits.services import record
from portal.permissions import Access
from registry.models import DatasetVersion, Model, ModelVersion
from workers import executors
from workers.models import Incident, IncidentEvent, RetrainingJob, RetrainingTemplate

log = logging.getLogger(__name__)
Job = RetrainingJob
S = RetrainingJob.State

SPEC_KEYS = {
    "entrypoint",
    "image",
    "args",
    "env",
    "datasets",
    "dataset_paths",
    "resources",
    "time_limit_s",
    "parameters",
    "code_repository",
    "code_commit",
}
RESOURCE_KEYS = {"cpus", "memory_mb", "gpus", "gpu_type"}
RESERVED_ENV = {"CHARTER_URL", "CHARTER_TOKEN", "CHARTER_JOB"}
MAX_TIME_LIMIT_S = 14 * 86400
LOG_TAIL_LINES = 200


class Conflict(Exception):
    """The request conflicts with the job's state (HTTP 409)."""

    def __init__(self, message: str, field: str = "state") -> None:
        self.field = field
        super().__init__(message)


# ---------------------------------------------------------------- the spec


def _int_in(value: Any, name: str, low: int, high: int, errors: dict[str, str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[name] = f"must be a whole number from {low} to {high}"
        return low
    return value


def validate_spec(spec: Any) -> dict[str, Any]:
    """The job spec, checked and normalised (a ValidationError names each bad field as
    ``spec.<field>``).

    ``entrypoint``: the command (a list, or a string split like a shell would) — ``{python}``
    stands for the executor's interpreter, ``{charter_root}`` for the portal's checkout;
    ``image``: the container image (Kubernetes); ``args``: more arguments; ``env``: variables
    (names in upper case; ``CHARTER_*`` ones are Charter's); ``datasets``: dataset version ids
    to train on (default: those of the version being retrained); ``dataset_paths``: a local
    path per dataset version id, where the job can read the file directly; ``resources``:
    ``cpus``, ``memory_mb``, ``gpus``, ``gpu_type``; ``time_limit_s``; ``parameters``
    (hyperparameters, passed to the job); ``code_repository``/``code_commit``.
    """
    import shlex

    if not isinstance(spec, dict):
        raise ValidationError({"spec": "must be an object"})
    errors: dict[str, str] = {}
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        errors["spec"] = f"unknown keys: {', '.join(sorted(unknown))}"
    entry = spec.get("entrypoint")
    if isinstance(entry, str):
        try:
            entry = shlex.split(entry)
        except ValueError as exc:
            errors["spec.entrypoint"] = f"cannot be split into arguments: {exc}"
            entry = []
    if not entry or not isinstance(entry, list) or not all(isinstance(p, str) for p in entry):
        errors.setdefault("spec.entrypoint", "is required: the command, as a list of strings")
        entry = []
    args = spec.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        errors["spec.args"] = "must be a list of strings"
        args = []
    env = spec.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k.isidentifier() and isinstance(v, str | int | float)
        for k, v in env.items()
    ):
        errors["spec.env"] = "must map variable names to strings"
        env = {}
    elif set(env) & RESERVED_ENV:
        errors["spec.env"] = f"{', '.join(sorted(set(env) & RESERVED_ENV))} are set by Charter"
    datasets = spec.get("datasets", [])
    if not isinstance(datasets, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in datasets
    ):
        errors["spec.datasets"] = "must be a list of dataset version ids"
        datasets = []
    paths = spec.get("dataset_paths", {})
    if not isinstance(paths, dict) or not all(
        str(k).isdigit() and isinstance(v, str) for k, v in paths.items()
    ):
        errors["spec.dataset_paths"] = "must map dataset version ids to paths"
        paths = {}
    res = spec.get("resources", {})
    resources = {"cpus": 1, "memory_mb": 1024, "gpus": 0, "gpu_type": ""}
    if not isinstance(res, dict) or set(res) - RESOURCE_KEYS:
        errors["spec.resources"] = f"must be an object with {', '.join(sorted(RESOURCE_KEYS))}"
    else:
        if "cpus" in res:
            resources["cpus"] = _int_in(res["cpus"], "spec.resources.cpus", 1, 1024, errors)
        if "memory_mb" in res:
            resources["memory_mb"] = _int_in(
                res["memory_mb"], "spec.resources.memory_mb", 1, 16 * 1024 * 1024, errors
            )
        if "gpus" in res:
            resources["gpus"] = _int_in(res["gpus"], "spec.resources.gpus", 0, 64, errors)
        gpu_type = res.get("gpu_type", "")
        if not isinstance(gpu_type, str) or len(gpu_type) > 100:
            errors["spec.resources.gpu_type"] = "must be a short string (e.g. a100)"
        else:
            resources["gpu_type"] = gpu_type
    limit = _int_in(
        spec.get("time_limit_s", 3600), "spec.time_limit_s", 1, MAX_TIME_LIMIT_S, errors
    )
    params = spec.get("parameters", {})
    if not isinstance(params, dict):
        errors["spec.parameters"] = "must be an object"
    for name in ("image", "code_repository", "code_commit"):
        if not isinstance(spec.get(name, ""), str):
            errors[f"spec.{name}"] = "must be a string"
    if errors:
        raise ValidationError(errors)
    return {
        "entrypoint": entry,
        "image": spec.get("image", ""),
        "args": [str(a) for a in args],
        "env": {k: str(v) for k, v in env.items()},
        "datasets": datasets,
        "dataset_paths": {str(k): v for k, v in paths.items()},
        "resources": resources,
        "time_limit_s": limit,
        "parameters": params,
        "code_repository": spec.get("code_repository", ""),
        "code_commit": spec.get("code_commit", ""),
    }


def _check_executor(name: str) -> str:
    if name not in executors.configured():
        raise ValidationError(
            {
                "executor": f"no executor called '{name}' "
                f"(configured: {', '.join(sorted(executors.configured()))})"
            }
        )
    return name


# ---------------------------------------------------------------- audit helpers


def _snapshot(job: RetrainingJob) -> dict[str, Any]:
    return {
        "model": job.model_id,
        "base_version": job.base_version_id,
        "trigger": job.trigger,
        "incident": job.incident_id,
        "executor": job.executor,
        "state": job.state,
        "spec": job.spec,
        "datasets": sorted(job.dataset_versions.values_list("pk", flat=True)) if job.pk else [],
        "approval": job.approval_id,
        "retry_of": job.retry_of_id,
        "reason": job.reason,
    }


def _actor(access: Access) -> Any:
    user = access.actor
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def _locked(job_id: int) -> RetrainingJob:
    return (
        RetrainingJob.objects.select_for_update(of=("self",))
        .select_related("use_case", "model", "base_version", "incident")
        .get(pk=job_id)
    )


def _transition(
    access: Access, job: RetrainingJob, target: str, reason: str = "", **fields: Any
) -> bool:
    """Move ``job`` (locked by the caller) to ``target`` with its audit event; False when it
    is there already."""
    current = job.state
    if current == target:
        return False
    if target not in RetrainingJob.TRANSITIONS[current]:
        raise Conflict(f"a {current} job cannot become {target}")
    now = timezone.now()
    job.state = target
    for name, value in fields.items():
        setattr(job, name, value)
    if target == S.RUNNING and job.started_at is None:
        job.started_at = now
    if target in RetrainingJob.FINAL:
        job.finished_at = now
        job.next_poll_at = None
    job.save()
    after: dict[str, Any] = {"state": target}
    for name in ("external_id", "exit_code", "message"):
        if name in fields:
            after[name] = fields[name]
    record(
        AuditEvent.Action.TRANSITION,
        actor=access.actor,
        obj=job,
        changes={"before": {"state": current}, "after": after, "reason": reason},
    )
    if job.incident_id is not None:
        _incident_note(
            job, f"Retraining job #{job.pk} is {target}" + (f": {reason}" if reason else "")
        )
    if target in RetrainingJob.FINAL:
        _close_account(job)
    return True


def _incident_note(job: RetrainingJob, text: str) -> None:
    IncidentEvent.objects.create(
        incident_id=job.incident_id,
        kind=IncidentEvent.Kind.RETRAINING_JOB,
        text=text[:2000],
        data={"job": job.pk, "state": job.state},
        at=timezone.now(),
    )


# ---------------------------------------------------------------- templates


@transaction.atomic
def set_template(
    access: Access,
    model: Model,
    *,
    spec: Any,
    executor: str = "",
    approval_environment: str = "production",
    enabled: bool = True,
) -> RetrainingTemplate:
    """Create or replace how ``model`` is retrained when asked without a spec."""
    access.require_contribute(model.use_case)
    spec = validate_spec(spec)
    if executor:
        _check_executor(executor)
    template = RetrainingTemplate.objects.select_for_update().filter(model=model).first()
    before = None
    if template is None:
        template = RetrainingTemplate(model=model, use_case=model.use_case)
    else:
        before = {
            "spec": template.spec,
            "executor": template.executor,
            "approval_environment": template.approval_environment,
            "enabled": template.enabled,
        }
    template.spec, template.executor, template.enabled = spec, executor, enabled
    template.approval_environment = approval_environment
    template.updated_by = _actor(access)
    template.full_clean()
    template.save()
    after = {
        "spec": spec,
        "executor": executor,
        "approval_environment": approval_environment,
        "enabled": enabled,
    }
    record(
        AuditEvent.Action.CREATE if before is None else AuditEvent.Action.UPDATE,
        actor=access.actor,
        obj=template,
        changes={"after": after} if before is None else {"before": before, "after": after},
    )
    return template


# ---------------------------------------------------------------- requesting a job


def needs_approval(use_case: Any) -> bool:
    from approvals.services import active_policy

    return active_policy(use_case.risk_tier, "retraining") is not None


def _base_version_for(model: Model, incident: Incident | None) -> ModelVersion | None:
    if incident is not None and incident.deployment_id is not None:
        version = incident.deployment.model_version
        if version.model_id == model.pk:
            return version
    versions = ModelVersion.objects.filter(model=model)
    return (
        versions.filter(status__in=["deployed", "approved"]).order_by("-created_at").first()
        or versions.order_by("-created_at").first()
    )


@transaction.atomic
def request_job(
    access: Access,
    *,
    model: Model,
    trigger: str,
    base_version: ModelVersion | None = None,
    incident: Incident | None = None,
    spec: Any = None,
    executor: str | None = None,
    reason: str = "",
    retry_of: RetrainingJob | None = None,
    approval_environment: str | None = None,
) -> RetrainingJob:
    """Ask for a retraining job. Without ``spec``/``executor`` the model's template says;
    without ``base_version`` the incident's deployed version, else the model's latest approved
    or deployed one. High-risk use cases (any tier with an active ``retraining`` approval
    policy) get an approval request and the job waits for it."""
    use_case = model.use_case
    access.require_contribute(use_case)
    if trigger not in RetrainingJob.Trigger.values:
        raise ValidationError(
            {"trigger": f"must be one of {', '.join(RetrainingJob.Trigger.values)}"}
        )
    template = RetrainingTemplate.objects.filter(model=model, enabled=True).first()
    if spec is None:
        if template is None:
            raise ValidationError(
                {"spec": f"give a spec: model '{model.name}' has no retraining template"}
            )
        spec = template.spec
    spec = validate_spec(spec)
    executor = _check_executor(
        executor or (template.executor if template else "") or executors.default_name()
    )
    if approval_environment is None:
        approval_environment = template.approval_environment if template else "production"
    if base_version is None:
        base_version = _base_version_for(model, incident)
    elif base_version.model_id != model.pk:
        raise ValidationError({"base_version": "must be a version of the same model"})
    if spec["datasets"]:
        found = {
            dv.pk: dv
            for dv in access.filter(DatasetVersion.objects.filter(pk__in=spec["datasets"]))
        }
        missing = [d for d in spec["datasets"] if d not in found]
        if missing:
            raise ValidationError({"spec.datasets": f"unknown dataset versions: {missing}"})
        datasets = [found[d] for d in spec["datasets"]]
    elif base_version is not None:
        datasets = list(base_version.training_datasets.all())
    else:
        datasets = []
    if not datasets:
        raise ValidationError(
            {"spec.datasets": "name the dataset versions to train on (the base version has none)"}
        )
    if any(dv.use_case_id != use_case.pk for dv in datasets):
        raise ValidationError({"spec.datasets": "must belong to the model's use case"})
    job = RetrainingJob(
        use_case=use_case,
        model=model,
        base_version=base_version,
        trigger=trigger,
        incident=incident,
        retry_of=retry_of,
        reason=reason[:2000],
        spec=spec,
        executor=executor,
        approval_environment=approval_environment,
        key=f"charter-rt-{uuid.uuid4().hex[:16]}",
        requested_by=_actor(access),
        state=S.PENDING,
    )
    approval_needed = needs_approval(use_case)
    if approval_needed:
        job.state = S.AWAITING_APPROVAL
    job.full_clean()
    job.save()
    job.dataset_versions.set(datasets)
    record(AuditEvent.Action.CREATE, actor=access.actor, obj=job, changes={"after": _snapshot(job)})
    if approval_needed:
        from approvals.models import ApprovalRequest
        from approvals.services import create_request

        req = create_request(
            access,
            use_case=use_case,
            kind=ApprovalRequest.Kind.RETRAINING,
            summary=f"Retraining job #{job.pk} of {model.name}"
            + (f" (from {base_version.version})" if base_version else "")
            + f" on {executor}: {reason or trigger}",
        )
        job.approval = req
        job.save(update_fields=["approval"])
    else:
        _queue_submit(job)
    return job


def _queue_submit(job: RetrainingJob) -> None:
    from workers.tasks import submit_retraining_job

    job_id = job.pk
    transaction.on_commit(lambda: submit_retraining_job.delay(job_id))


def request_for_incident(access: Access, incident: Incident, reason: str) -> tuple[Any, str]:
    """Called by the incident service when retraining is requested (by a rule or a person):
    start a job from the model's template. Returns (job or None, a line for the timeline)."""
    deployment = incident.deployment
    if deployment is None:
        return None, "no deployment on this incident: request a job from the model's page"
    model = deployment.model_version.model
    template = RetrainingTemplate.objects.filter(model=model, enabled=True).first()
    if template is None:
        return None, (
            f"model '{model.name}' has no retraining template: no job was started "
            "(set one to start jobs automatically)"
        )
    person = _actor(access)
    try:
        with transaction.atomic():
            job = request_job(
                access,
                model=model,
                trigger=RetrainingJob.Trigger.PERSON if person else RetrainingJob.Trigger.INCIDENT,
                incident=incident,
                base_version=deployment.model_version,
                reason=reason,
            )
    except (ValidationError, PermissionDenied) as exc:
        messages = getattr(exc, "messages", [str(exc)])
        return None, f"no job was started: {'; '.join(messages)}"
    waiting = " (awaiting approval)" if job.state == S.AWAITING_APPROVAL else ""
    return job, f"retraining job #{job.pk} requested on {job.executor}{waiting}"


# ---------------------------------------------------------------- approval of the job


def on_approval_closed(req: Any) -> None:
    """The ``approval_closed`` receiver: release or cancel the job waiting for ``req``."""
    from approvals.models import ApprovalRequest

    if req.kind != ApprovalRequest.Kind.RETRAINING:
        return
    for job_id in RetrainingJob.objects.filter(approval=req).values_list("pk", flat=True):
        job = _locked(job_id)
        if job.state != S.AWAITING_APPROVAL:
            continue
        system = Access.system()
        if req.state == ApprovalRequest.State.APPROVED:
            _transition(system, job, S.PENDING, f"approval request {req.pk} approved")
            _queue_submit(job)
        else:
            _transition(
                system,
                job,
                S.CANCELLED,
                f"approval request {req.pk} {req.state}",
                message=f"not approved ({req.state})",
            )


# ---------------------------------------------------------------- the job's account and token


def _account_name(job: RetrainingJob) -> str:
    return f"retraining-job-{job.pk}"


def _ensure_account(job: RetrainingJob) -> Any:
    from portal.services import create_service_account, grant_access

    system = Access.system()
    if job.account_id is None:
        account = create_service_account(
            system,
            username=_account_name(job),
            description=f"Retraining job #{job.pk} of {job.model.name} (posts its results)",
        )
        job.account = account.user
        job.save(update_fields=["account"])
        grant_access(system, job.use_case, account.user, "contribute", reason=f"{job}")
    return job.account


def _issue_token(job: RetrainingJob) -> str:
    from portal.services import issue_token

    account = _ensure_account(job)
    lifetime = int(job.spec.get("time_limit_s", 3600)) + settings.CHARTER_JOB_TOKEN_MARGIN_S
    token, secret = issue_token(
        Access.system(),
        user=account,
        name=f"retraining job #{job.pk}",
        use_cases=[job.use_case],
        expires_at=timezone.now() + timedelta(seconds=lifetime),
    )
    job.token = token
    job.save(update_fields=["token"])
    return secret


def _close_account(job: RetrainingJob) -> None:
    """The job has ended: its tokens are revoked and its grant withdrawn (audited)."""
    if job.account_id is None:
        return
    from portal.models import ApiToken
    from portal.services import revoke_access, revoke_token

    system = Access.system()
    for token in ApiToken.objects.filter(user_id=job.account_id, revoked_at__isnull=True):
        revoke_token(system, token, reason=f"retraining job #{job.pk} ended ({job.state})")
    revoke_access(system, job.use_case, job.account, reason=f"retraining job #{job.pk} ended")


def is_job_token(job: RetrainingJob, request_auth: Any) -> bool:
    """True when the request came with a token of this job's account."""
    from portal.models import ApiToken

    return (
        isinstance(request_auth, ApiToken)
        and job.account_id is not None
        and request_auth.user_id == job.account_id
    )


# ---------------------------------------------------------------- submission


def portal_url() -> str:
    return (settings.CHARTER_JOB_PORTAL_URL or settings.CHARTER_BASE_URL).rstrip("/")


def job_context(job: RetrainingJob) -> dict[str, Any]:
    """What the job is told about itself (``CHARTER_JOB``, JSON): no secrets."""
    base = job.base_version
    paths = job.spec.get("dataset_paths", {})
    return {
        "id": job.pk,
        "key": job.key,
        "use_case": job.use_case_id,
        "model": job.model_id,
        "model_name": job.model.name,
        "base_version": (
            {"id": base.pk, "version": base.version, "metrics": base.metrics} if base else None
        ),
        "datasets": [
            {
                "id": dv.pk,
                "dataset": dv.dataset.name,
                "version": dv.version,
                "sha256": dv.sha256,
                "uri": dv.uri,
                "path": paths.get(str(dv.pk), ""),
                "download": f"/api/v1/retraining-jobs/{job.pk}/datasets/{dv.pk}/"
                if dv.file
                else "",
            }
            for dv in job.dataset_versions.select_related("dataset").order_by("pk")
        ],
        "parameters": job.spec.get("parameters", {}),
        "code_repository": job.spec.get("code_repository", ""),
        "code_commit": job.spec.get("code_commit", ""),
        "approval_environment": job.approval_environment,
        "progress_url": f"/api/v1/retraining-jobs/{job.pk}/progress/",
        "result_url": f"/api/v1/retraining-jobs/{job.pk}/result/",
    }


def executor_job(job: RetrainingJob, token: str) -> executors.ExecutorJob:
    spec = job.spec
    res = spec.get("resources", {})
    env = {
        **spec.get("env", {}),
        "CHARTER_URL": portal_url(),
        "CHARTER_JOB": json.dumps(job_context(job), sort_keys=True),
        "PYTHONUNBUFFERED": "1",
    }
    return executors.ExecutorJob(
        key=job.key,
        name=f"retraining job #{job.pk} of {job.model.name}",
        command=[*spec["entrypoint"], *spec.get("args", [])],
        env=env,
        secrets={"CHARTER_TOKEN": token},
        resources=executors.Resources(
            cpus=res.get("cpus", 1),
            memory_mb=res.get("memory_mb", 1024),
            gpus=res.get("gpus", 0),
            gpu_type=res.get("gpu_type", ""),
        ),
        time_limit_s=int(spec.get("time_limit_s", 3600)),
        image=spec.get("image", ""),
        labels={"charter.dev/job-id": str(job.pk), "charter.dev/use-case": str(job.use_case_id)},
    )


def submit(job_id: int) -> str:
    """Hand a pending job to its executor (the submit task). Idempotent: a job already
    submitted, or no longer pending, is left alone; the executor dedupes on ``job.key``."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.state != S.PENDING or job.external_id:
            return job.state
        token = _issue_token(job)
        work = executor_job(job, token)
    try:
        executor = executors.get_executor(job.executor)
        external_id = executor.submit(work)
    except executors.ExecutorError as exc:
        with transaction.atomic():
            job = _locked(job_id)
            if job.state == S.PENDING:
                _transition(
                    Access.system(), job, S.FAILED, "submission failed", message=str(exc)[:2000]
                )
        return S.FAILED
    with transaction.atomic():
        job = _locked(job_id)
        if job.state != S.PENDING:  # cancelled while submitting
            if job.state == S.CANCELLED:
                transaction.on_commit(lambda: _cancel_quietly(job.executor, external_id))
            return job.state
        _transition(
            Access.system(),
            job,
            S.QUEUED,
            f"submitted to {job.executor} as {external_id}",
            external_id=external_id,
            submitted_at=timezone.now(),
        )
        _schedule_poll(job, settings.CHARTER_RETRAINING_POLL_BASE_S)
    return S.QUEUED


def _cancel_quietly(executor_name: str, external_id: str) -> None:
    try:
        executors.get_executor(executor_name).cancel(external_id)
    except executors.ExecutorError:
        log.warning("could not cancel %s on %s", external_id, executor_name, exc_info=True)


# ---------------------------------------------------------------- polling


def _schedule_poll(job: RetrainingJob, delay: float) -> None:
    """Schedule the next poll (caller holds the row lock): bump the sequence so any other
    poll in flight for this job stops when it runs."""
    from workers.tasks import poll_retraining_job

    job.poll_seq += 1
    job.poll_interval_s = delay
    job.next_poll_at = timezone.now() + timedelta(seconds=delay)
    job.save(update_fields=["poll_seq", "poll_interval_s", "next_poll_at"])
    args = (job.pk, job.poll_seq)
    if poll_retraining_job.app.conf.task_always_eager:
        return  # in-process (tests, eager mode): whoever drives calls poll(); no recursion
    transaction.on_commit(lambda: poll_retraining_job.apply_async(args, countdown=delay))


def _next_delay(job: RetrainingJob, changed: bool) -> float:
    base = settings.CHARTER_RETRAINING_POLL_BASE_S
    if changed or not job.poll_interval_s:
        return base
    return min(settings.CHARTER_RETRAINING_POLL_MAX_S, job.poll_interval_s * 2)


def poll(job_id: int, seq: int | None = None) -> str:
    """Ask the executor about one job and record what changed (the poll task)."""
    job = RetrainingJob.objects.filter(pk=job_id).first()
    if job is None or job.is_final or not job.external_id:
        return job.state if job else "missing"
    if seq is not None and seq != job.poll_seq:
        return "stale"
    executor_name, external_id = job.executor, job.external_id
    status: executors.JobStatus | None = None
    logs = None
    error = ""
    try:
        executor = executors.get_executor(executor_name)
        status = executor.status(external_id)
    except executors.JobNotFound as exc:
        status = executors.JobStatus(executors.State.LOST, message=str(exc))
    except executors.ExecutorError as exc:
        error = str(exc)
    if status is not None and status.state != executors.State.LOST:
        try:
            logs = executor.logs(external_id, LOG_TAIL_LINES)
        except executors.ExecutorError:
            logs = None
    with transaction.atomic():
        job = _locked(job_id)
        if job.is_final or (seq is not None and seq != job.poll_seq):
            return "stale" if not job.is_final else job.state
        changed = False
        if logs is not None and logs != job.log_tail:
            job.log_tail = logs[-20000:]
            job.save(update_fields=["log_tail"])
        if status is None:
            job.message = f"cannot reach the executor: {error}"[:2000]
            job.save(update_fields=["message"])
        else:
            changed = _apply(job, status)
        if not job.is_final:
            _schedule_poll(job, _next_delay(job, changed))
        return job.state


def _apply(job: RetrainingJob, status: executors.JobStatus) -> bool:
    """Record an executor status on the locked job; True when its state changed."""
    system = Access.system()
    state = status.state
    if status.progress is not None and status.progress > job.progress:
        job.progress = status.progress
        job.save(update_fields=["progress"])
    if state == executors.State.LOST:
        if job.cancel_requested_at is not None:
            return _transition(system, job, S.CANCELLED, "cancelled (the executor removed it)")
        changed = _transition(
            system, job, S.LOST, "the executor no longer knows the job", message=status.message
        )
        if changed:
            _open_lost_incident(job, status.message)
        return changed
    if state == executors.State.SUCCEEDED and job.produced_version_id is None:
        return _transition(
            system,
            job,
            S.FAILED,
            "the job exited successfully but posted no result",
            exit_code=status.exit_code,
            message="exited 0 without posting a result (no model version)",
        )
    target = state.value
    if target == job.state:
        if status.message and status.message != job.message:
            job.message = status.message[:2000]
            job.save(update_fields=["message"])
        return False
    if target not in RetrainingJob.TRANSITIONS[job.state]:
        return False  # e.g. running -> queued (a backend that lags): keep what we know
    fields: dict[str, Any] = {"message": status.message[:2000]}
    if state.final:
        fields["exit_code"] = status.exit_code
    if state == executors.State.SUCCEEDED:
        fields["progress"] = 1.0
    reason = status.message or f"{job.executor} reports {target}"
    return _transition(system, job, target, reason, **fields)


def _open_lost_incident(job: RetrainingJob, why: str) -> Incident:
    from workers import services

    now = timezone.now()
    deployment = job.incident.deployment if job.incident_id and job.incident else None
    incident = Incident.objects.create(
        use_case_id=job.use_case_id,
        deployment=deployment,
        title=f"Retraining job #{job.pk} lost by its executor ({job.executor})"[:300],
        description=(
            f"Retraining job #{job.pk} of {job.model.name} ({job.external_id} on "
            f"{job.executor}) is no longer known to its executor: {why}"
        ),
        severity="medium",
        details={
            "retraining_job": job.pk,
            "executor": job.executor,
            "external_id": job.external_id,
        },
        opened_at=now,
        last_seen_at=now,
    )
    record(
        AuditEvent.Action.CREATE,
        actor=None,
        obj=incident,
        changes={"after": services._incident_audit(incident), "reason": "retraining job lost"},
    )
    services._event(incident, IncidentEvent.Kind.OPENED, incident.description, job=job.pk)
    services._notify_owners(incident, f"Incident (medium): {incident.title}")
    return incident


def poll_overdue(now: Any = None) -> int:
    """Re-queue polls of active jobs whose next poll is overdue (Celery beat)."""
    now = now or timezone.now()
    grace = timedelta(seconds=max(30.0, settings.CHARTER_RETRAINING_POLL_MAX_S))
    count = 0
    overdue = RetrainingJob.objects.filter(
        state__in=[S.QUEUED, S.RUNNING], next_poll_at__lt=now - grace
    ).values_list("pk", flat=True)
    for job_id in overdue:
        with transaction.atomic():
            job = _locked(job_id)
            if job.is_final or job.next_poll_at is None or job.next_poll_at >= now - grace:
                continue
            _schedule_poll(job, 0)
            count += 1
    for job_id in RetrainingJob.objects.filter(
        state=S.PENDING, external_id="", created_at__lt=now - grace
    ).values_list("pk", flat=True):
        _queue_submit(RetrainingJob(pk=job_id))
        count += 1
    return count


# ---------------------------------------------------------------- people's actions


def can_act(access: Access, job: RetrainingJob) -> bool:
    return access.can_contribute(job.use_case)


@transaction.atomic
def cancel(access: Access, job: RetrainingJob, *, reason: str = "") -> RetrainingJob:
    """Cancel a job: one not submitted yet ends at once; a submitted one is stopped on its
    executor and ends when the executor says so (the next poll comes at once)."""
    job = _locked(job.pk)
    if not can_act(access, job):
        raise PermissionDenied("you may not act on this use case's retraining jobs")
    if job.is_final:
        raise Conflict(f"the job has already ended ({job.state})")
    if job.state == S.AWAITING_APPROVAL:
        _transition(access, job, S.CANCELLED, reason or "cancelled before approval")
        if job.approval_id and job.approval.is_open:
            from approvals.services import withdraw_request

            withdraw_request(Access.system(), job.approval, reason=f"job #{job.pk} cancelled")
        return job
    if not job.external_id:
        _transition(access, job, S.CANCELLED, reason or "cancelled before submission")
        return job
    if job.cancel_requested_at is None:
        job.cancel_requested_at = timezone.now()
        job.save(update_fields=["cancel_requested_at"])
        record(
            AuditEvent.Action.UPDATE,
            actor=access.actor,
            obj=job,
            changes={"after": {"cancel_requested": True}, "reason": reason or "cancel"},
        )
    from workers.tasks import cancel_retraining_job

    job_id = job.pk
    transaction.on_commit(lambda: cancel_retraining_job.delay(job_id))
    return job


def cancel_on_executor(job_id: int) -> str:
    """The cancel task: stop the job on its executor, then poll at once."""
    job = RetrainingJob.objects.get(pk=job_id)
    if job.is_final or not job.external_id:
        return job.state
    try:
        executors.get_executor(job.executor).cancel(job.external_id)
    except executors.JobNotFound:
        pass
    except executors.ExecutorError as exc:
        with transaction.atomic():
            job = _locked(job_id)
            job.message = f"cancel failed: {exc}"[:2000]
            job.save(update_fields=["message"])
        raise
    with transaction.atomic():
        job = _locked(job_id)
        if not job.is_final:
            _schedule_poll(job, 0.5)
    return job.state


def retry(access: Access, job: RetrainingJob, *, reason: str = "") -> RetrainingJob:
    """A new job with the same spec, executor and base version."""
    if not can_act(access, job):
        raise PermissionDenied("you may not act on this use case's retraining jobs")
    if not job.is_final or job.state == S.SUCCEEDED:
        raise Conflict("only a failed, cancelled or lost job can be retried")
    return request_job(
        access,
        model=job.model,
        trigger=RetrainingJob.Trigger.PERSON if _actor(access) else job.trigger,
        base_version=job.base_version,
        incident=job.incident,
        spec={**job.spec, "datasets": list(job.dataset_versions.values_list("pk", flat=True))},
        executor=job.executor,
        reason=reason or f"retry of job #{job.pk}",
        retry_of=job,
        approval_environment=job.approval_environment,
    )


# ---------------------------------------------------------------- the job's side


def _require_job_caller(job: RetrainingJob, auth: Any) -> None:
    if not is_job_token(job, auth):
        raise PermissionDenied("only this job's own token may post here")


@transaction.atomic
def record_progress(
    job: RetrainingJob, auth: Any, *, progress: float, message: str = ""
) -> RetrainingJob:
    """The job reports progress (0..1). Not audited (a measurement), except that the first
    report of a queued job records it as running."""
    job = _locked(job.pk)
    _require_job_caller(job, auth)
    if job.is_final:
        raise Conflict(f"the job has already ended ({job.state})")
    job.progress = max(job.progress, max(0.0, min(1.0, float(progress))))
    job.progress_message = message[:500]
    job.save(update_fields=["progress", "progress_message"])
    if job.state in (S.PENDING, S.QUEUED):
        _transition(Access(user=job.account), job, S.RUNNING, "the job reported progress")
    return job


def accept_result(
    job: RetrainingJob, auth: Any, *, model_version: ModelVersion, summary: dict[str, Any]
) -> RetrainingJob:
    """The job posts the model version it produced: Charter checks it is this job's (its
    model, parent and data, registered by the job's account, with a verified signature on an
    artifact), records it, and opens the approval request for it."""
    from approvals.services import create_request

    with transaction.atomic():
        job = _locked(job.pk)
        _require_job_caller(job, auth)
        if job.is_final:
            raise Conflict(f"the job has already ended ({job.state})")
        if job.produced_version_id is not None:
            if job.produced_version_id == model_version.pk:
                return job
            raise Conflict("the job has already posted its result", "model_version")
        errors: dict[str, str] = {}
        if model_version.model_id != job.model_id:
            errors["model_version"] = "is not a version of the job's model"
        elif model_version.registered_by_id != job.account_id:
            errors["model_version"] = "was not registered by this job"
        elif job.base_version_id and model_version.parent_id != job.base_version_id:
            errors["model_version"] = (
                f"its parent must be the version being retrained ({job.base_version_id})"
            )
        if not errors:
            used = set(model_version.training_datasets.values_list("pk", flat=True))
            wanted = set(job.dataset_versions.values_list("pk", flat=True))
            if not wanted <= used:
                errors["model_version"] = (
                    f"must list the job's dataset versions {sorted(wanted)} as training data"
                )
        if errors:
            raise ValidationError(errors)
        verified = model_version.artifacts.filter(attestations__verdict="verified").exists()
        job.produced_version = model_version
        job.result = {**summary, "signature_verified": verified}
        job.progress = max(job.progress, 0.99)
        job.save(update_fields=["produced_version", "result", "progress"])
        record(
            AuditEvent.Action.UPDATE,
            actor=job.account,
            obj=job,
            changes={
                "after": {"produced_version": model_version.pk},
                "reason": "the job posted its result",
            },
        )
        if job.state in (S.PENDING, S.QUEUED):
            _transition(Access(user=job.account), job, S.RUNNING, "the job posted its result")
        requester = job.requested_by
        access = (
            Access(user=requester)
            if requester is not None and Access(user=requester).can_contribute(job.use_case)
            else Access.system()
        )
        req = create_request(
            access,
            model_version=model_version,
            environment=job.approval_environment,
            summary=(
                f"Produced by retraining job #{job.pk} ({job.trigger}"
                + (f", incident #{job.incident_id}" if job.incident_id else "")
                + f") from {job.base_version.version if job.base_version else 'scratch'}."
            ),
        )
        job.release_approval = req
        job.save(update_fields=["release_approval"])
        if job.incident_id:
            _incident_note(
                job,
                f"Retraining job #{job.pk} produced {model_version}; approval request "
                f"#{req.pk} opened",
            )
    return job


def visible_jobs(access: Access) -> Any:
    return access.filter(
        RetrainingJob.objects.select_related(
            "model", "base_version", "produced_version", "incident", "requested_by", "use_case"
        )
    )
