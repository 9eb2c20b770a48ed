"""Every write to the registry goes through these functions.

They check the caller's rights, validate, save and append the audit event in
one transaction. The REST API, the browser forms, the Django admin, Celery
tasks and management commands all call them, so none can skip a rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from audits.models import AuditEvent
from audits.services import record
from portal.db import defer
from portal.permissions import Access
from registry.models import (
    Artifact,
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    UseCase,
)

# Fields the service layer owns; callers cannot set them directly.
PROTECTED_FIELDS = {
    "id",
    "use_case",
    "status",
    "created_by",
    "registered_by",
    "released_by",
    "created_at",
    "updated_at",
    "summary_status",
}


class InvalidTransition(Exception):
    """A status change the object's lifecycle does not allow (HTTP 409)."""

    def __init__(self, obj: models.Model, target: str, field: str = "status") -> None:
        self.field = field
        current = getattr(obj, field)
        allowed = sorted(obj.TRANSITIONS.get(current, ()))  # type: ignore[attr-defined]
        self.current, self.target, self.allowed = current, target, allowed
        label = obj._meta.verbose_name
        hint = ", ".join(allowed) if allowed else "none (final state)"
        super().__init__(f"{label} cannot go from '{current}' to '{target}'; allowed: {hint}")


# ---------------------------------------------------------------- internals


def snapshot(obj: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """Field values as plain JSON-able data (foreign keys as ids, files as names)."""
    data: dict[str, Any] = {}
    for f in obj._meta.concrete_fields:
        if fields is not None and f.name not in fields:
            continue
        if f.name in ("created_at", "updated_at"):
            continue
        value = getattr(obj, f.attname)
        if isinstance(f, models.FileField):
            value = value.name if value else ""
        data[f.name] = value
    return data


def _m2m_ids(obj: models.Model, name: str) -> list[int]:
    return sorted(getattr(obj, name).values_list("pk", flat=True))


def _set_fields(obj: models.Model, values: dict[str, Any]) -> None:
    bad = set(values) & PROTECTED_FIELDS
    if bad:
        from django.core.exceptions import ValidationError

        raise ValidationError({name: "is set by Charter, not by the caller" for name in bad})
    for name, value in values.items():
        setattr(obj, name, value)


def _loaded_relations(obj: models.Model) -> set[str]:
    """Foreign keys of ``obj`` that point at an object already read from the database.

    Their existence check in ``full_clean`` (one query each) would only re-read a row
    this request holds; the database's own foreign-key constraint still guards the
    insert against a row deleted meanwhile.
    """
    names = set()
    for f in obj._meta.concrete_fields:
        if not f.many_to_one or not f.is_cached(obj):
            continue
        target = f.get_cached_value(obj)
        if (
            target is not None
            and not target._state.adding
            and target.pk is not None
            and getattr(obj, f.attname) == target.pk
            and not f.get_limit_choices_to()
        ):
            names.add(f.name)
    return names


def _full_clean(obj: models.Model, *, database_checks: bool = True) -> None:
    """``full_clean`` without re-reading foreign keys already loaded (see above).

    Field validation, ``clean()``, unique checks and constraints run as in Django's
    ``Model.full_clean``; only the skipped foreign keys' existence queries are saved.
    ``database_checks=False`` leaves out the unique checks and constraints (a query each),
    for an insert that the database's own constraints guard (see :func:`service`).
    """
    from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

    errors: dict[str, Any] = {}
    try:
        obj.clean_fields(exclude=_loaded_relations(obj))
    except ValidationError as e:
        errors = e.update_error_dict(errors)
    try:
        obj.clean()
    except ValidationError as e:
        errors = e.update_error_dict(errors)
    failed = {name for name in errors if name != NON_FIELD_ERRORS}
    for check in (obj.validate_unique, obj.validate_constraints) if database_checks else ():
        try:
            check(exclude=set(failed))
        except ValidationError as e:
            errors = e.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


def _link_new(obj: models.Model, name: str, items: list[models.Model]) -> None:
    """``obj.<name>.add(*items)`` for an object created in this transaction.

    What ``add`` does (the ``m2m_changed`` pre_add/post_add signals with the same
    arguments, so lineage edges and other receivers follow; the through rows), less
    its query for rows already linked: a new object has none, and ``set()`` would
    also read and diff them.
    """
    if not items:
        return
    from django.db import connections, router
    from django.db.models.signals import m2m_changed

    field: Any = obj._meta.get_field(name)
    through = field.remote_field.through
    if field.remote_field.symmetrical or not through._meta.auto_created:
        getattr(obj, name).add(*items)  # rows both ways, or a through model's own fields
        return
    source = through._meta.get_field(field.m2m_field_name()).column
    target = through._meta.get_field(field.m2m_reverse_field_name()).column
    db = router.db_for_write(through, instance=obj)
    pk_set = {item.pk for item in items}
    signal = {
        "sender": through,
        "instance": obj,
        "reverse": False,
        "model": field.related_model,
        "pk_set": pk_set,
        "using": db,
    }
    m2m_changed.send(action="pre_add", **signal)
    # the rows as one plain INSERT: an auto-created through table has no fields, defaults
    # or signals of its own, so the ORM's bulk_create would only add its query building
    # (sent with the next statement where the connection can: nobody reads its answer)
    connection = connections[db]
    q = connection.ops.quote_name
    rows = sorted(pk_set)
    sql = (
        f"INSERT INTO {q(through._meta.db_table)} ({q(source)}, {q(target)}) "  # noqa: S608  # nosec B608
        f"VALUES {', '.join(['(%s, %s)'] * len(rows))}"
    )
    params = [value for pk in rows for value in (obj.pk, pk)]
    if not defer(sql, params, using=db):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    m2m_changed.send(action="post_add", **signal)


#: Set on an object while ``_save_new`` links its many-to-many relations: signal
#: handlers that look for what an *existing* object affects (approvals to void) may
#: skip a row that did not exist before this transaction.
CREATING = "_charter_creating"


class _BrokenConstraint(IntegrityError):
    """A new object's insert broke a unique or check constraint (see :func:`service`)."""

    def __init__(self, obj: models.Model, error: IntegrityError) -> None:
        super().__init__(*error.args)
        self.obj, self.error = obj, error


def service[F: Callable[..., Any]](func: F) -> F:
    """``transaction.atomic`` for a service function, with constraint errors explained.

    A new object's unique checks and constraints are not queried before its insert
    (``Model.full_clean`` would ask one query each on every create): the database's own
    constraints guard the insert. When it breaks one, the transaction (or its savepoint)
    rolls back first, then Django's ``validate_unique`` and ``validate_constraints`` name
    the fields as ``full_clean`` would have — the same 400 answer, at no cost to the
    inserts that succeed.
    """
    atomic = transaction.atomic(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return atomic(*args, **kwargs)
        except _BrokenConstraint as exc:
            exc.obj.validate_unique()
            exc.obj.validate_constraints()
            raise exc.error from None  # not a rule Django knows of: as the database said

    return wrapper  # type: ignore[return-value]


def _save_new[M: models.Model](
    access: Access, obj: M, m2m: dict[str, Iterable[models.Model]] | None = None
) -> M:
    """Insert ``obj`` with its many-to-many links and audit it; call within :func:`service`."""
    _full_clean(obj, database_checks=False)
    try:
        obj.save()
    except IntegrityError as exc:
        raise _BrokenConstraint(obj, exc) from exc
    changes: dict[str, Any] = {"after": snapshot(obj)}
    setattr(obj, CREATING, True)
    try:
        for name, items in (m2m or {}).items():
            unique = list({item.pk: item for item in items}.values())
            _link_new(obj, name, unique)
            changes["after"][name] = sorted(item.pk for item in unique)
    finally:
        delattr(obj, CREATING)
    # sent with the commit (an event a webhook could stand for is appended at once)
    record(AuditEvent.Action.CREATE, actor=access.actor, obj=obj, changes=changes, deferred=True)
    return obj


def _save_changes[M: models.Model](
    access: Access,
    obj: M,
    values: dict[str, Any],
    m2m: dict[str, Iterable[models.Model]] | None = None,
    *,
    internal: dict[str, Any] | None = None,
) -> M:
    """Apply caller ``values`` (and service-owned ``internal`` values), audit the diff."""
    before = snapshot(obj)
    before_m2m = {name: _m2m_ids(obj, name) for name in (m2m or {})}
    _set_fields(obj, values)
    for name, value in (internal or {}).items():
        setattr(obj, name, value)
    obj.full_clean()
    after = snapshot(obj)
    changed = {k for k in after if after[k] != before.get(k)}
    diff_before = {k: before.get(k) for k in changed}
    diff_after = {k: after[k] for k in changed}
    if changed:
        obj.save()
    for name, items in (m2m or {}).items():
        new_ids = sorted(i.pk for i in items)
        if new_ids != before_m2m[name]:
            getattr(obj, name).set(list(items))
            diff_before[name], diff_after[name] = before_m2m[name], new_ids
    if diff_after:
        record(
            AuditEvent.Action.UPDATE,
            actor=access.actor,
            obj=obj,
            changes={"before": diff_before, "after": diff_after},
        )
    return obj


def _transition[M: models.Model](access: Access, obj: M, target: str, reason: str = "") -> M:
    current = obj.status  # type: ignore[attr-defined]
    if target not in obj.TRANSITIONS.get(current, ()):  # type: ignore[attr-defined]
        raise InvalidTransition(obj, target)
    obj.status = target  # type: ignore[attr-defined]
    obj.save(update_fields=["status", *(["updated_at"] if hasattr(obj, "updated_at") else [])])
    record(
        AuditEvent.Action.TRANSITION,
        actor=access.actor,
        obj=obj,
        changes={"before": {"status": current}, "after": {"status": target}, "reason": reason},
    )
    return obj


def _require_linkable(access: Access, items: Iterable[models.Model], field: str) -> list[Any]:
    """Linked objects must exist and be visible to the caller."""
    from django.core.exceptions import ValidationError

    items = list(items)
    for item in items:
        if not access.can_view(item.use_case_id):  # type: ignore[attr-defined]
            raise ValidationError({field: f"unknown object {item.pk}"})
    return items


def _stamp(access: Access) -> Any:
    return access.actor if access.actor is not None and access.actor.is_authenticated else None


# ---------------------------------------------------------------- use cases


@service
def create_use_case(access: Access, **data: Any) -> UseCase:
    from django.core.exceptions import PermissionDenied

    if not access.can_create_use_case():
        raise PermissionDenied("you may not create use cases")
    use_case = UseCase()
    _set_fields(use_case, data)
    use_case.created_by = _stamp(access)
    if use_case.next_review_date is None:
        use_case.next_review_date = timezone.localdate() + timedelta(
            days=use_case.review_cadence_days
        )
    _save_new(access, use_case)
    creator = _stamp(access)
    if creator is not None and not access.can_change_use_case(use_case):
        # Whoever proposes a use case owns it until an admin says otherwise.
        from portal.services import grant_access

        grant_access(Access.system(), use_case, creator, "own", reason="creator of the use case")
    return use_case


@service
def update_use_case(access: Access, use_case: UseCase, **data: Any) -> UseCase:
    access.require_change_use_case(use_case)
    return _save_changes(access, use_case, data)


@service
def transition_use_case(
    access: Access, use_case: UseCase, status: str, *, reason: str = ""
) -> UseCase:
    access.require_change_use_case(use_case)
    return _transition(access, use_case, status, reason)


# ---------------------------------------------------------------- datasets


@service
def create_dataset(access: Access, *, use_case: UseCase, **data: Any) -> Dataset:
    access.require_contribute(use_case)
    dataset = Dataset(use_case=use_case)
    _set_fields(dataset, data)
    return _save_new(access, dataset)


@service
def update_dataset(access: Access, dataset: Dataset, **data: Any) -> Dataset:
    access.require_contribute(dataset.use_case)
    return _save_changes(access, dataset, data)


def _check_new_file(data: dict[str, Any]) -> None:
    """A newly uploaded dataset file must be what its name says (portal/security.py)."""
    from django.core.files.base import File
    from django.db.models.fields.files import FieldFile

    from portal.security import check_dataset_upload

    upload = data.get("file")
    if isinstance(upload, File) and not isinstance(upload, FieldFile):
        check_dataset_upload(upload)


@service
def create_dataset_version(
    access: Access,
    *,
    dataset: Dataset,
    derived_from: Iterable[DatasetVersion] = (),
    **data: Any,
) -> DatasetVersion:
    access.require_contribute(dataset.use_case)
    _check_new_file(data)
    version = DatasetVersion(dataset=dataset, use_case=dataset.use_case)
    _set_fields(version, data)
    version.created_by = _stamp(access)
    if version.file:
        version.summary_status = DatasetVersion.SummaryStatus.PENDING
    parents = _require_linkable(access, derived_from, "derived_from")
    _save_new(access, version, {"derived_from": parents})
    if version.file:
        from registry.tasks import summarize_dataset_version

        transaction.on_commit(lambda: summarize_dataset_version.delay(version.pk))
    return version


@service
def update_dataset_version(
    access: Access,
    version: DatasetVersion,
    /,
    *,
    derived_from: Iterable[DatasetVersion] | None = None,
    **data: Any,
) -> DatasetVersion:
    access.require_contribute(version.use_case)
    _check_new_file(data)
    m2m = None
    if derived_from is not None:
        parents = _require_linkable(access, derived_from, "derived_from")
        if any(p.pk == version.pk for p in parents):
            from django.core.exceptions import ValidationError

            raise ValidationError({"derived_from": "a version cannot derive from itself"})
        m2m = {"derived_from": parents}
    return _save_changes(access, version, data, m2m)


@service
def apply_dataset_summary(version_id: int, summary: dict[str, Any] | None, error: str = "") -> None:
    """Store what the summary task computed (called by the worker as the system)."""
    version = DatasetVersion.objects.select_for_update().filter(pk=version_id).first()
    if version is None:
        return
    if summary is None:
        values: dict[str, Any] = {"quality_summary": {"error": error}}
        status = DatasetVersion.SummaryStatus.FAILED
    else:
        values = summary
        status = DatasetVersion.SummaryStatus.READY
    _save_changes(Access.system(), version, values, internal={"summary_status": status})


# ---------------------------------------------------------------- models


@service
def create_model(access: Access, *, use_case: UseCase, **data: Any) -> Model:
    access.require_contribute(use_case)
    model = Model(use_case=use_case)
    _set_fields(model, data)
    return _save_new(access, model)


@service
def update_model(access: Access, model: Model, **data: Any) -> Model:
    access.require_contribute(model.use_case)
    return _save_changes(access, model, data)


DATASET_ROLES = ("training_datasets", "validation_datasets", "test_datasets")


@service
def register_model_version(
    access: Access,
    *,
    model: Model,
    training_datasets: Iterable[DatasetVersion] = (),
    validation_datasets: Iterable[DatasetVersion] = (),
    test_datasets: Iterable[DatasetVersion] = (),
    **data: Any,
) -> ModelVersion:
    access.require_contribute(model.use_case)
    version = ModelVersion(model=model, use_case=model.use_case)
    _set_fields(version, data)
    version.registered_by = _stamp(access)
    if version.parent_id is not None and version.parent.model_id != model.pk:
        from django.core.exceptions import ValidationError

        raise ValidationError({"parent": "the parent must be a version of the same model"})
    m2m = {
        "training_datasets": _require_linkable(access, training_datasets, "training_datasets"),
        "validation_datasets": _require_linkable(
            access, validation_datasets, "validation_datasets"
        ),
        "test_datasets": _require_linkable(access, test_datasets, "test_datasets"),
    }
    return _save_new(access, version, m2m)


@service
def update_model_version(access: Access, version: ModelVersion, /, **data: Any) -> ModelVersion:
    access.require_contribute(version.use_case)
    m2m = {}
    for role in DATASET_ROLES:
        if role in data:
            m2m[role] = _require_linkable(access, data.pop(role), role)
    if (
        "parent" in data
        and data["parent"] is not None
        and data["parent"].model_id != version.model_id
    ):
        from django.core.exceptions import ValidationError

        raise ValidationError({"parent": "the parent must be a version of the same model"})
    return _save_changes(access, version, data, m2m)


# Reached only through the approval workflow and the deployment record (or by an admin),
# never by the people who registered the version.
GOVERNED_STATES = {ModelVersion.Status.APPROVED, ModelVersion.Status.DEPLOYED}


@service
def transition_model_version(
    access: Access, version: ModelVersion, status: str, *, reason: str = ""
) -> ModelVersion:
    from django.core.exceptions import PermissionDenied

    access.require_contribute(version.use_case)
    if status not in ModelVersion.TRANSITIONS.get(version.status, ()):
        raise InvalidTransition(version, status)
    if status in GOVERNED_STATES and not access.can_administer():
        raise PermissionDenied(f"'{status}' is set by the approval workflow, not by contributors")
    return _transition(access, version, status, reason)


# ---------------------------------------------------------------- evidence, artifacts


@service
def add_evidence(
    access: Access,
    *,
    use_case: UseCase | None = None,
    model_version: ModelVersion | None = None,
    **data: Any,
) -> Evidence:
    from django.core.exceptions import ValidationError

    if model_version is not None:
        if use_case is not None and use_case.pk != model_version.use_case_id:
            raise ValidationError({"use_case": "does not match the model version's use case"})
        use_case = model_version.use_case
    if use_case is None:
        raise ValidationError({"use_case": "evidence needs a use case or a model version"})
    access.require_contribute(use_case)
    evidence = Evidence(use_case=use_case, model_version=model_version)
    _set_fields(evidence, data)
    evidence.created_by = _stamp(access)
    return _save_new(access, evidence)


@service
def add_artifact(access: Access, *, model_version: ModelVersion, **data: Any) -> Artifact:
    access.require_contribute(model_version.use_case)
    artifact = Artifact(model_version=model_version, use_case=model_version.use_case)
    _set_fields(artifact, data)
    artifact.created_by = _stamp(access)
    return _save_new(access, artifact)


# ---------------------------------------------------------------- deployments


def record_deployment(
    access: Access,
    *,
    model_version: ModelVersion,
    replaces: Deployment | None = None,
    **data: Any,
) -> Deployment:
    """Record a release. The deployment it replaces (if any) is marked replaced.

    A gated environment (production by default) needs an approved, unexpired,
    unvoided request for exactly this version and a verified artifact signature
    (approvals.gate); a refusal is audited in its own transaction, then raised.
    """
    from approvals import gate

    access.require_contribute(model_version.use_case)
    gate.enforce(access, model_version, str(data.get("environment", "")))
    return _record_deployment(access, model_version=model_version, replaces=replaces, **data)


@service
def _record_deployment(
    access: Access,
    *,
    model_version: ModelVersion,
    replaces: Deployment | None = None,
    **data: Any,
) -> Deployment:
    from django.core.exceptions import ValidationError

    from approvals import gate

    # Again inside the transaction: an approval voided since the check above still counts.
    late = gate.reasons(model_version, str(data.get("environment", "")))
    if late:
        raise gate.GateRefused(model_version, str(data.get("environment", "")), late)
    if replaces is not None:
        if replaces.use_case_id != model_version.use_case_id:
            raise ValidationError({"replaces": "must be a deployment of the same use case"})
        if replaces.status != Deployment.Status.ACTIVE:
            raise ValidationError({"replaces": f"deployment {replaces.pk} is not active"})
    deployment = Deployment(
        model_version=model_version, use_case=model_version.use_case, replaces=replaces
    )
    _set_fields(deployment, data)
    deployment.released_by = _stamp(access)
    if deployment.released_at is None:
        deployment.released_at = timezone.now()
    _save_new(access, deployment)
    if replaces is not None:
        _transition(
            access, replaces, Deployment.Status.REPLACED, f"replaced by deployment {deployment.pk}"
        )
    return deployment


def rollback_deployment(access: Access, deployment: Deployment, *, reason: str = "") -> Deployment:
    """Roll back an active deployment to the one it replaced, as a new deployment record.

    In a gated environment the restored version needs a current approval, or an
    earlier one if its policy allows rollbacks without a new approval, and a
    verified artifact signature.
    """
    from approvals import gate

    access.require_contribute(deployment.use_case)
    if deployment.replaces is not None:
        gate.enforce(
            access, deployment.replaces.model_version, deployment.environment, rollback=True
        )
    return _rollback_deployment(access, deployment, reason=reason)


@service
def _rollback_deployment(access: Access, deployment: Deployment, *, reason: str = "") -> Deployment:
    from django.core.exceptions import ValidationError

    previous = deployment.replaces
    if previous is None:
        raise ValidationError(
            {"replaces": "this deployment replaced nothing; there is nothing to roll back to"}
        )
    _transition(access, deployment, Deployment.Status.ROLLED_BACK, reason)
    restored = Deployment(
        model_version=previous.model_version,
        use_case=deployment.use_case,
        environment=deployment.environment,
        region=deployment.region,
        strategy=Deployment.Strategy.FULL,
        traffic_share=1.0,
        endpoint=deployment.endpoint,
        replaces=deployment,
        notes=f"Rollback of deployment {deployment.pk}: {reason}".strip(),
        released_by=_stamp(access),
        released_at=timezone.now(),
    )
    return _save_new(access, restored)


@service
def transition_deployment(
    access: Access, deployment: Deployment, status: str, *, reason: str = ""
) -> Deployment:
    access.require_contribute(deployment.use_case)
    return _transition(access, deployment, status, reason)


# ---------------------------------------------------------------- generic (admin)


UPDATERS = {
    UseCase: update_use_case,
    Dataset: update_dataset,
    DatasetVersion: update_dataset_version,
    Model: update_model,
    ModelVersion: update_model_version,
}
TRANSITIONERS = {
    UseCase: transition_use_case,
    ModelVersion: transition_model_version,
    Deployment: transition_deployment,
}


@service
def delete_object(access: Access, obj: models.Model, *, reason: str = "") -> None:
    """Delete a registry record (admins only; objects with dependants are protected)."""
    from django.core.exceptions import PermissionDenied

    if not access.can_administer():
        raise PermissionDenied("only administrators may delete registry records")
    before = snapshot(obj)
    record(
        AuditEvent.Action.DELETE,
        actor=access.actor,
        obj=obj,
        changes={"before": before, "reason": reason},
    )
    obj.delete()
