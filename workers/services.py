"""Every write of the monitoring side goes through these functions.

Governance facts — reference profiles, monitoring configuration, alert rules, incidents and
what people do with them — are written with their audit event in one transaction, as in
``registry/services.py``. Telemetry itself is measurement data, not a governance fact: a batch
row records who sent what (``submitted_by``, the idempotency key, the body's digest) and is
folded into a window by a worker; neither the intake nor the fold writes audit events (they
would serialise every telemetry request on the audit chain's lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import File
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from approvals.services import notify
from audits.models import AuditEvent
from audits.services import record
from portal.db.compiled import CompiledQuery
from portal.permissions import Access
from registry.models import DatasetVersion, Deployment, UseCase
from workers import foldclaims, performance
from workers.drift import (
    DatasetProfile,
    DriftConfig,
    FeatureProfile,
    ServiceMetrics,
    build_reference_profile,
    data_quality,
    feature_drift_from_profiles,
    fold,
    merge,
    read_csv_columns,
    read_parquet_columns,
    window_profile,
)
from workers.models import (
    AlertRule,
    DriftResult,
    Incident,
    IncidentEvent,
    MonitoringConfig,
    PredictionRecord,
    ReferenceProfile,
    TelemetryBatch,
    WindowProfile,
)
from workers.schema import Schema

log = logging.getLogger(__name__)

PREDICTION = "prediction"


class Conflict(Exception):
    """The request conflicts with the current state (HTTP 409)."""

    def __init__(self, message: str, field: str = "non_field_errors") -> None:
        self.field = field
        super().__init__(message)


def digest_json(data: Any) -> str:
    """SHA-256 of ``data`` as JSON with sorted keys and no spaces (the same parsed body gives
    the same digest however the client formatted it)."""
    payload = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _profile_sha(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- reference profiles


def _feature_list(profile: DatasetProfile, prediction_column: str, label_column: str) -> list:
    excluded = {prediction_column, label_column} - {""}
    return [
        {"name": name, "kind": fp.kind}
        for name, fp in profile.features.items()
        if name not in excluded
    ]


def _check_columns(profile: DatasetProfile, prediction_column: str, label_column: str) -> None:
    errors: dict[str, str] = {}
    for key, value in (("prediction_column", prediction_column), ("label_column", label_column)):
        if value and value not in profile.features:
            errors[key] = f"'{value}' is not a column of the profile"
    if prediction_column and prediction_column == label_column:
        errors["label_column"] = "must differ from prediction_column"
    if not errors and not _feature_list(profile, prediction_column, label_column):
        errors["profile"] = "the profile has no input features"
    if errors:
        raise ValidationError(errors)


def _reference_in_use(ref: ReferenceProfile) -> bool:
    deployments = Deployment.objects.filter(
        model_version__training_datasets=ref.dataset_version_id
    ).values("id")
    return WindowProfile.objects.filter(deployment_id__in=deployments).exists()


def _ref_audit(ref: ReferenceProfile) -> dict[str, Any]:
    return {
        "status": ref.status,
        "source": ref.source,
        "rows": ref.rows,
        "features": ref.features,
        "prediction_column": ref.prediction_column,
        "label_column": ref.label_column,
        "sha256": ref.sha256,
        "error": ref.error,
    }


def _replaceable(access: Access, dataset_version: DatasetVersion) -> ReferenceProfile | None:
    access.require_contribute(dataset_version.use_case)
    ref = (
        ReferenceProfile.objects.select_for_update().filter(dataset_version=dataset_version).first()
    )
    if ref is not None and ref.status == ReferenceProfile.Status.READY and _reference_in_use(ref):
        raise Conflict(
            "this reference profile is the drift baseline of deployed telemetry; register a "
            "new dataset version to change the baseline",
            "profile",
        )
    return ref


def _save_reference(access: Access, ref: ReferenceProfile, before: dict[str, Any] | None) -> None:
    ref.full_clean()
    ref.save()
    after = _ref_audit(ref)
    if before is None:
        record(AuditEvent.Action.CREATE, actor=access.actor, obj=ref, changes={"after": after})
    else:
        changed = {k for k in after if after[k] != before.get(k)}
        if changed:
            record(
                AuditEvent.Action.UPDATE,
                actor=access.actor,
                obj=ref,
                changes={
                    "before": {k: before.get(k) for k in changed},
                    "after": {k: after[k] for k in changed},
                },
            )


@transaction.atomic
def set_reference_profile(
    access: Access,
    dataset_version: DatasetVersion,
    *,
    profile: Any,
    prediction_column: str = "",
    label_column: str = "",
) -> ReferenceProfile:
    """Store a reference profile computed by the client (``DatasetProfile.to_dict()``)."""
    ref = _replaceable(access, dataset_version)
    try:
        parsed = DatasetProfile.from_dict(profile)
    except ValueError as exc:
        raise ValidationError({"profile": str(exc)}) from None
    _check_columns(parsed, prediction_column, label_column)
    before = _ref_audit(ref) if ref is not None else None
    if ref is None:
        ref = ReferenceProfile(dataset_version=dataset_version, use_case=dataset_version.use_case)
    data = parsed.to_dict()
    ref.status, ref.source, ref.profile, ref.error = "ready", "posted", data, ""
    ref.features = _feature_list(parsed, prediction_column, label_column)
    ref.prediction_column, ref.label_column = prediction_column, label_column
    ref.rows, ref.sha256 = parsed.rows, _profile_sha(data)
    ref.created_by = ref.created_by or (access.actor if access.authenticated else None)
    _save_reference(access, ref, before)
    return ref


@transaction.atomic
def request_reference_profile(
    access: Access,
    dataset_version: DatasetVersion,
    *,
    prediction_column: str = "",
    label_column: str = "",
) -> ReferenceProfile:
    """Queue the computation of the reference profile from the dataset version's file."""
    ref = _replaceable(access, dataset_version)
    if not dataset_version.file:
        raise ValidationError({"file": "the dataset version has no uploaded file to profile"})
    before = _ref_audit(ref) if ref is not None else None
    if ref is None:
        ref = ReferenceProfile(dataset_version=dataset_version, use_case=dataset_version.use_case)
    ref.status, ref.source, ref.error = "pending", "file", ""
    ref.prediction_column, ref.label_column = prediction_column, label_column
    ref.created_by = ref.created_by or (access.actor if access.authenticated else None)
    _save_reference(access, ref, before)
    from workers.tasks import compute_reference_profile

    transaction.on_commit(lambda: compute_reference_profile.delay(ref.pk))
    return ref


def read_table(stream: Any, name: str = "") -> dict[str, np.ndarray]:
    """Columns of a CSV or Parquet file (Parquet recognised by its magic bytes)."""
    head = stream.read(4)
    stream.seek(0)
    if head == b"PAR1" or name.endswith((".parquet", ".pq")):
        return read_parquet_columns(stream)
    return read_csv_columns(stream)


def compute_reference(ref_id: int) -> str:
    """Profile the dataset version's file and store the result (the worker, as the system)."""
    ref = ReferenceProfile.objects.select_related("dataset_version").filter(pk=ref_id).first()
    if ref is None or ref.status != ReferenceProfile.Status.PENDING:
        return "gone"
    version = ref.dataset_version
    error, data = "", None
    try:
        with version.file.open("rb") as stream:
            columns = read_table(stream, version.file.name)
        parsed = build_reference_profile(columns, rng=ref_id)
        _check_columns(parsed, ref.prediction_column, ref.label_column)
        data = parsed.to_dict()
    except (ValueError, OSError, ValidationError) as exc:
        error = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        log.warning("reference profile %s: %s", ref_id, error)
    except Exception as exc:  # pyarrow raises its own errors for unreadable files
        if exc.__class__.__module__.startswith("pyarrow"):
            error = f"cannot read the file: {exc}"
        else:
            raise
    with transaction.atomic():
        ref = ReferenceProfile.objects.select_for_update().get(pk=ref_id)
        if ref.status != ReferenceProfile.Status.PENDING:
            return "gone"
        before = _ref_audit(ref)
        if data is None:
            ref.status, ref.error = "failed", error[:2000]
        else:
            parsed = DatasetProfile.from_dict(data)
            ref.status, ref.profile, ref.error = "ready", data, ""
            ref.features = _feature_list(parsed, ref.prediction_column, ref.label_column)
            ref.rows, ref.sha256 = parsed.rows, _profile_sha(data)
        _save_reference(Access.system(), ref, before)
    return ref.status


# Parsed references, keyed by (pk, sha256): a worker folds many batches against one.
_PARSED: dict[tuple[int, str], DatasetProfile] = {}


def parsed_reference(ref: ReferenceProfile) -> DatasetProfile:
    key = (ref.pk, ref.sha256)
    cached = _PARSED.get(key)
    if cached is None:
        if len(_PARSED) > 64:
            _PARSED.clear()
        cached = _PARSED[key] = DatasetProfile.from_dict(ref.profile)
    return cached


def reference_for(
    deployment: Deployment, *, defer_profile: bool = False, with_dataset: bool = False
) -> ReferenceProfile | None:
    """The drift baseline of a deployment: the ready reference profile of its model version's
    first training dataset version (by id) that has one.

    ``defer_profile``: leave the profile document unread (telemetry intake checks batches
    against :func:`parsed_reference`, which keeps parsed profiles by id and digest, so the
    document is read, once, only by a process that has not parsed it yet).
    ``with_dataset``: read its dataset version and dataset along (pages name them)."""
    if defer_profile and not with_dataset and connection.vendor == "postgresql":
        return _REFERENCE_WITHOUT_PROFILE.first(deployment.model_version_id)
    refs = _references_of(deployment.model_version_id)
    if defer_profile:
        refs = refs.defer("profile")
    if with_dataset:
        refs = refs.select_related("dataset_version__dataset")
    return refs.first()


def _references_of(model_version: Any) -> QuerySet:
    return ReferenceProfile.objects.filter(
        dataset_version__trained_model_versions=model_version,
        status=ReferenceProfile.Status.READY,
    ).order_by("dataset_version_id")


# Every telemetry post reads its deployment's baseline: compiled once per process.
_REFERENCE_WITHOUT_PROFILE = CompiledQuery(lambda mv: _references_of(mv).defer("profile")[:1])


def inputs_of(ref: ReferenceProfile) -> DatasetProfile:
    """The reference restricted to the input features."""
    full = parsed_reference(ref)
    return DatasetProfile({n: full[n] for n in ref.feature_names}, full.rows)


def schema_for(ref: ReferenceProfile) -> Schema:
    return Schema.from_reference(parsed_reference(ref), ref.feature_names, ref.prediction_column)


# ---------------------------------------------------------------- monitoring configuration


def config_for(deployment: Deployment) -> MonitoringConfig:
    """The deployment's monitoring config (an unsaved default when none was set)."""
    relation = Deployment._meta.get_field("monitoring")
    if relation.is_cached(deployment):  # read with the deployment (select_related)
        existing = relation.get_cached_value(deployment)
    else:
        existing = MonitoringConfig.objects.filter(deployment=deployment).first()
    if existing is not None:
        return existing
    return MonitoringConfig(
        deployment=deployment,
        use_case_id=deployment.use_case_id,
        window_seconds=settings.CHARTER_TELEMETRY_WINDOW_SECONDS,
    )


def _config_audit(cfg: MonitoringConfig) -> dict[str, Any]:
    return {
        "window_seconds": cfg.window_seconds,
        "drift_config": cfg.drift_config,
        "classification_threshold": cfg.classification_threshold,
    }


@transaction.atomic
def update_monitoring_config(
    access: Access, deployment: Deployment, **data: Any
) -> MonitoringConfig:
    """Change the window length, drift overrides or classification threshold (audited)."""
    access.require_contribute(deployment.use_case)
    unknown = set(data) - {"window_seconds", "drift_config", "classification_threshold"}
    if unknown:
        raise ValidationError({k: "cannot be set here" for k in unknown})
    cfg = config_for(deployment)
    before = _config_audit(cfg) if cfg.pk else None
    if "drift_config" in data:
        drift = data["drift_config"] or {}
        if not isinstance(drift, dict):
            raise ValidationError({"drift_config": "expected an object"})
        try:
            DriftConfig.from_dict(drift)
        except (ValueError, TypeError) as exc:
            raise ValidationError({"drift_config": str(exc)}) from None
        ref = reference_for(deployment)
        if ref is not None:
            named = set(drift.get("per_feature_method", {})) | set(
                drift.get("per_feature_threshold", {})
            )
            extra = sorted(named - set(ref.feature_names) - {PREDICTION})
            if extra:
                raise ValidationError(
                    {"drift_config": f"per-feature overrides name unknown features: {extra}"}
                )
    threshold = data.get("classification_threshold", cfg.classification_threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValidationError({"classification_threshold": "expected a number"})
    if not math.isfinite(threshold):
        raise ValidationError({"classification_threshold": "expected a finite number"})
    for key, value in data.items():
        setattr(cfg, key, value)
    cfg.updated_by = access.actor if access.authenticated else None
    cfg.full_clean(exclude=["deployment", "use_case"])
    cfg.save()
    after = _config_audit(cfg)
    if before is None:
        record(AuditEvent.Action.CREATE, actor=access.actor, obj=cfg, changes={"after": after})
    elif before != after:
        changed = {k for k in after if after[k] != before[k]}
        record(
            AuditEvent.Action.UPDATE,
            actor=access.actor,
            obj=cfg,
            changes={
                "before": {k: before[k] for k in changed},
                "after": {k: after[k] for k in changed},
            },
        )
    WindowProfile.objects.filter(deployment=deployment).update(dirty=True)
    return cfg


def drift_config_of(cfg: MonitoringConfig) -> DriftConfig:
    return DriftConfig.from_dict(cfg.drift_config or {})


# ---------------------------------------------------------------- intake


def window_bounds(when: datetime, seconds: int) -> tuple[datetime, datetime]:
    """The window ``[start, end)`` holding ``when``: epoch-aligned multiples of ``seconds``."""
    epoch = int(when.timestamp())
    start = epoch - epoch % seconds
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + seconds, UTC)


def check_timestamp(value: Any) -> datetime:
    """An ISO 8601 time with a zone, neither too old nor in the future (``now`` if absent)."""
    now = timezone.now()
    if value in (None, ""):
        return now
    from django.utils.dateparse import parse_datetime

    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationError({"timestamp": "expected an ISO 8601 date-time with a time zone"})
    if parsed > now + timedelta(seconds=settings.CHARTER_TELEMETRY_MAX_CLOCK_SKEW_S):
        raise ValidationError({"timestamp": "lies in the future"})
    if parsed < now - timedelta(days=settings.CHARTER_TELEMETRY_MAX_AGE_DAYS):
        raise ValidationError(
            {"timestamp": f"older than {settings.CHARTER_TELEMETRY_MAX_AGE_DAYS} days"}
        )
    return parsed


def existing_batch(deployment: Deployment, key: str) -> TelemetryBatch | None:
    return TelemetryBatch.objects.filter(deployment=deployment, idempotency_key=key).first()


def replay(batch: TelemetryBatch, digest: str) -> TelemetryBatch:
    """The original batch when ``digest`` matches its body; else a 409."""
    if batch.body_sha256 != digest:
        raise Conflict(
            f"idempotency key '{batch.idempotency_key}' was already used with a different body",
            "idempotency_key",
        )
    return batch


def accept_batch(
    access: Access,
    deployment: Deployment,
    *,
    kind: str,
    key: str,
    digest: str,
    rows: int,
    timestamp: datetime,
    payload: dict[str, Any] | None = None,
    file: File | None = None,
    queue: bool = True,
    looked_up: bool = False,
) -> tuple[TelemetryBatch, bool]:
    """Store a checked batch and queue its fold; ``(batch, replayed)``.

    A retry with the same key and body returns the original batch (``replayed``); the same key
    with another body is a :class:`Conflict`. The unique key makes concurrent retries safe.
    ``looked_up``: the caller has already looked for a batch with this key, or leaves a
    repeat to the unique key (which turns it into the same replay), so it is not looked
    for here.
    """
    access.require_contribute(deployment.use_case)
    found = None if looked_up else existing_batch(deployment, key)
    if found is not None:
        return replay(found, digest), True
    start = end = None
    if kind != TelemetryBatch.Kind.LABELS:
        start, end = window_bounds(timestamp, config_for(deployment).window_seconds)
    batch = TelemetryBatch(
        deployment=deployment,
        use_case_id=deployment.use_case_id,
        kind=kind,
        idempotency_key=key,
        body_sha256=digest,
        rows=rows,
        timestamp=timestamp,
        window_start=start,
        window_end=end,
        payload=payload,
        submitted_by=access.actor if access.authenticated and not access.is_system else None,
    )
    try:
        with transaction.atomic():
            if file is not None:
                batch.file.save(f"{deployment.pk}-{digest[:16]}", file, save=False)
            batch.response = batch_response(batch)  # its id is added when it is answered
            batch.save()
            if queue:
                # robust: the batch is stored either way; if the broker is down the error is
                # logged and the straggler sweep (Celery beat) queues the fold later, instead
                # of the caller being told 500 about a batch that was in fact accepted
                transaction.on_commit(lambda: queue_fold(batch), robust=True)
    except IntegrityError:
        if batch.file:
            batch.file.delete(save=False)
        found = existing_batch(deployment, key)
        if found is None:
            raise
        return replay(found, digest), True
    return batch, False


def queue_fold(batch: TelemetryBatch) -> None:
    """Queue the fold of a committed batch's window, unless one is queued and has not yet
    looked for waiting batches (workers/foldclaims.py); labels are folded one by one."""
    from workers.tasks import fold_telemetry_batch

    window = None if batch.kind == TelemetryBatch.Kind.LABELS else batch.window_start
    if not foldclaims.claim(batch.deployment_id, window, batch.pk):
        return
    try:
        fold_telemetry_batch.apply_async(
            (batch.pk,), countdown=settings.CHARTER_TELEMETRY_FOLD_DELAY_S or None
        )
    except BaseException:
        foldclaims.release(batch.deployment_id, window)  # the next batch queues it
        raise


def batch_response(batch: TelemetryBatch) -> dict[str, Any]:
    """The answer to the batch's intake, less its id (stored before the row has one; see
    :func:`answer_body`)."""
    return {
        "deployment": batch.deployment_id,
        "kind": batch.kind,
        "idempotency_key": batch.idempotency_key,
        "rows": batch.rows,
        "timestamp": batch.timestamp.isoformat(),
        "window_start": batch.window_start.isoformat() if batch.window_start else None,
        "window_end": batch.window_end.isoformat() if batch.window_end else None,
        "status": "queued",
    }


def answer_body(batch: TelemetryBatch) -> dict[str, Any]:
    """What an intake of ``batch`` answers, a replay included: the stored response with the
    batch's id first and the status ``queued`` (whatever happened since)."""
    return {"id": batch.pk, **(batch.response or {}), "status": "queued"}


# ---------------------------------------------------------------- folding


def _test_delay(batch: TelemetryBatch) -> None:
    """Only tests set these: hold the fold's transaction open so a worker can be killed in it."""
    delay = os.environ.get("CHARTER_TEST_FOLD_DELAY_S")
    if not delay:
        return
    marker = os.environ.get("CHARTER_TEST_FOLD_MARKER_DIR")
    if marker:
        Path(marker, f"folding-{batch.pk}").write_text(str(os.getpid()))
    time.sleep(float(delay))


def _locked_window(deployment: Deployment, start: datetime, end: datetime) -> WindowProfile:
    try:
        with transaction.atomic():
            WindowProfile.objects.get_or_create(
                deployment=deployment,
                start=start,
                defaults={"end": end, "use_case_id": deployment.use_case_id},
            )
    except IntegrityError:
        pass  # created concurrently: lock it below
    return WindowProfile.objects.select_for_update().get(deployment=deployment, start=start)


def _prediction_template(
    deployment: Deployment, ref: ReferenceProfile, predictions: list[Any]
) -> FeatureProfile | None:
    """The empty prediction profile of a window: on the reference's prediction column, else on
    a baseline fixed from the first predictions the deployment sent."""
    if ref.prediction_column:
        return parsed_reference(ref)[ref.prediction_column].empty_like()
    cfg = config_for(deployment)
    if not cfg.pk:
        try:
            with transaction.atomic():
                cfg.save()
        except IntegrityError:
            pass
    cfg = MonitoringConfig.objects.select_for_update().get(deployment=deployment)
    if cfg.prediction_baseline is None:
        values = [v for v in predictions if v is not None]
        if not values:
            return None
        base = build_reference_profile({PREDICTION: values}, rng=deployment.pk)[PREDICTION]
        cfg.prediction_baseline = base.to_dict()
        cfg.save(update_fields=["prediction_baseline"])
    return FeatureProfile.from_dict(PREDICTION, cfg.prediction_baseline, "prediction_baseline")


def _fold_predictions(
    window: WindowProfile,
    deployment: Deployment,
    ref: ReferenceProfile,
    predictions: list[Any],
    rng: int,
) -> None:
    if window.predictions is None:
        template = _prediction_template(deployment, ref, predictions)
        if template is None:
            return
        current = DatasetProfile({PREDICTION: template.empty_like()}, 0)
    else:
        current = DatasetProfile(
            {PREDICTION: FeatureProfile.from_dict(PREDICTION, window.predictions)},
            window.predictions["count"],
        )
    fold(current, {PREDICTION: predictions}, rng=rng)
    window.predictions = current[PREDICTION].to_dict()


def _columns_of(batch: TelemetryBatch) -> dict[str, Any]:
    if batch.kind == TelemetryBatch.Kind.ROWS:
        return dict(batch.payload or {})
    with batch.file.open("rb") as stream:
        columns = read_table(stream, batch.file.name)
    out: dict[str, Any] = {"errors": 0}
    if "prediction" in columns:
        preds = columns.pop("prediction")
        out["predictions"] = (
            [None if math.isnan(v) else v for v in preds.tolist()]
            if preds.dtype.kind == "f"
            else preds.tolist()
        )
    if "prediction_id" in columns:
        out["prediction_ids"] = [str(v) for v in columns.pop("prediction_id").tolist()]
    if "latency_ms" in columns:
        out["latency_ms"] = columns.pop("latency_ms")
    out["features"] = columns
    return out


#: Unfolded batches of the same window that one fold task takes along with its own (see
#: fold_batch): the window's profile is read, parsed, serialised and written once for all.
FOLD_GROUP = 50


def _companions(batch: TelemetryBatch) -> list[TelemetryBatch]:
    """Other unfolded row and profile batches of ``batch``'s window, locked; batches another
    fold holds are skipped (it folds them)."""
    if batch.kind == TelemetryBatch.Kind.LABELS or FOLD_GROUP <= 1:
        return []
    return list(
        TelemetryBatch.objects.select_for_update(skip_locked=True)
        .filter(
            deployment_id=batch.deployment_id,
            window_start=batch.window_start,
            folded_at__isnull=True,
        )
        .exclude(kind=TelemetryBatch.Kind.LABELS)
        .exclude(pk=batch.pk)
        .order_by("pk")[: FOLD_GROUP - 1]
    )


#: at most this many groups of a window's waiting batches are folded by one task
MAX_GROUPS_PER_TASK = 40


def fold_batch(batch_id: int) -> str:
    """Fold the batch and every batch waiting in its window (the fold task of a window).

    The window's fold claim is dropped first (workers/foldclaims.py): batches that found it
    taken were stored before this looks for them, later ones queue a fold of their own.
    The batch is folded with up to FOLD_GROUP - 1 others (:func:`fold_group`), then any
    batches left waiting in the window, a group at a time, oldest first.
    """
    head = (
        TelemetryBatch.objects.filter(pk=batch_id)
        .values_list("deployment_id", "window_start", "kind")
        .first()
    )
    if head is None:
        return "gone"
    deployment_id, window_start, kind = head
    if kind == TelemetryBatch.Kind.LABELS:
        return fold_group(batch_id)
    foldclaims.release(deployment_id, window_start)
    outcome = fold_group(batch_id)
    waiting = TelemetryBatch.objects.filter(
        deployment_id=deployment_id, window_start=window_start, folded_at__isnull=True
    ).exclude(kind=TelemetryBatch.Kind.LABELS)
    for _ in range(MAX_GROUPS_PER_TASK):
        oldest = waiting.order_by("pk").values_list("pk", flat=True).first()
        if oldest is None:
            return outcome
        fold_group(oldest)
    # more than one task's share waits: another task takes the rest (unless a batch stored
    # meanwhile has queued one), instead of leaving it to the straggler sweep
    rest = waiting.order_by("pk").only("deployment_id", "window_start", "kind").first()
    if rest is not None:
        queue_fold(rest)
    return outcome


def fold_group(batch_id: int) -> str:
    """Fold one batch into its window, exactly once, and up to FOLD_GROUP - 1 other batches
    waiting in that window with it.

    The batch rows are locked first and their ``folded_at`` set in the same transaction as the
    window's new profile, so a task that runs twice (a redelivery after a worker died, a
    duplicate message) or the task of a batch folded along with another finds it folded and
    does nothing, and a worker killed mid-fold leaves neither half. Should one batch of a group
    fail to fold, the group is undone and this task folds its own batch alone (the others'
    tasks do the same for theirs).
    """
    with transaction.atomic():
        # the batch row only: the joined deployment's row stays unlocked (a lock on it made
        # every batch posted for the deployment wait out the fold in its foreign-key check)
        batch = (
            TelemetryBatch.objects.select_for_update(of=("self",))
            .select_related("deployment")
            .filter(pk=batch_id)
            .first()
        )
        if batch is None:
            return "gone"
        if batch.folded_at is not None:
            return "already folded"
        group = sorted([batch, *_companions(batch)], key=lambda b: b.pk)  # folded in id order
        results: dict[int, dict[str, Any]] | None = None
        if len(group) > 1:
            try:
                with transaction.atomic():
                    results = _fold_rows(group)
            except ValueError:
                group, results = [batch], None
        if results is None:
            try:
                with transaction.atomic():  # a batch that cannot be folded leaves no trace ...
                    if batch.kind == TelemetryBatch.Kind.LABELS:
                        results = {batch.pk: _fold_labels(batch)}
                    else:
                        results = _fold_rows([batch])
            except ValueError as exc:  # ... and is marked, so that no retry loops on it
                log.warning("telemetry batch %s cannot be folded: %s", batch_id, exc)
                results = {batch.pk: {"error": str(exc)[:2000]}}
        _test_delay(batch)
        now = timezone.now()
        storage = TelemetryBatch._meta.get_field("file").storage
        for member in group:
            member.folded_at = now
            member.payload = None
            member.result = results[member.pk]
            member.response = {**member.response, "status": "folded"}
            file = member.file.name
            member.file = ""
            member.save(update_fields=["folded_at", "payload", "result", "response", "file"])
            if file:
                transaction.on_commit(lambda file=file: storage.delete(file))
    return "failed" if "error" in results[batch.pk] else "folded"


def _fold_rows(batches: list[TelemetryBatch]) -> dict[int, dict[str, Any]]:
    """Fold row and profile batches of one window (the first batch's) in order; each batch's
    result by its id. A ValueError leaves the window as it was (the caller's savepoint)."""
    first = batches[0]
    deployment = first.deployment
    ref = reference_for(deployment)
    if ref is None:
        return {
            b.pk: {"error": "the deployment has no reference profile any more"} for b in batches
        }
    window = _locked_window(deployment, first.window_start, first.window_end)
    inputs = inputs_of(ref)
    if window.profile is None:
        current = window_profile(inputs)
    else:
        current = DatasetProfile.from_dict(window.profile)
    results = {}
    for batch in batches:
        batch.deployment = deployment
        current, result = _fold_one(window, current, deployment, ref, batch)
        results[batch.pk] = result
    window.profile = current.to_dict()
    window.batches += len(batches)
    window.version += 1
    window.dirty = True
    window.save()
    return results


def _fold_one(
    window: WindowProfile,
    current: DatasetProfile,
    deployment: Deployment,
    ref: ReferenceProfile,
    batch: TelemetryBatch,
) -> tuple[DatasetProfile, dict[str, Any]]:
    """Fold one batch into the window's profile (returned) and its other figures (in place)."""
    result: dict[str, Any] = {"window": window.pk}
    if batch.kind == TelemetryBatch.Kind.PROFILE:
        posted = DatasetProfile.from_dict(batch.payload["profile"])
        current = merge(current, posted, rng=batch.pk)
        rows = posted.rows
        if batch.payload.get("predictions") is not None:
            posted_pred = FeatureProfile.from_dict(PREDICTION, batch.payload["predictions"])
            if window.predictions is None:
                window.predictions = posted_pred.to_dict()
            else:
                a = DatasetProfile(
                    {PREDICTION: FeatureProfile.from_dict(PREDICTION, window.predictions)},
                    window.predictions["count"],
                )
                b = DatasetProfile({PREDICTION: posted_pred}, posted_pred.count)
                window.predictions = merge(a, b, rng=batch.pk)[PREDICTION].to_dict()
        service = batch.payload.get("service")
        if service is not None:
            old = ServiceMetrics.from_dict(window.service) if window.service else ServiceMetrics()
            window.service = old.merge(ServiceMetrics.from_dict(service)).to_dict()
    else:
        columns = _columns_of(batch)
        fold(current, columns["features"], rng=batch.pk)
        rows = batch.rows
        predictions = columns.get("predictions")
        if predictions is not None:
            try:
                _fold_predictions(window, deployment, ref, list(predictions), batch.pk)
            except ValueError as exc:
                result["warning"] = f"predictions not profiled: {exc}"
            ids = columns.get("prediction_ids")
            if ids:
                PredictionRecord.objects.bulk_create(
                    [
                        PredictionRecord(
                            deployment=deployment, window=window, prediction_id=i, value=p
                        )
                        for i, p in zip(ids, predictions, strict=True)
                        if p is not None
                    ],
                    ignore_conflicts=True,
                    batch_size=2000,
                )
        latency = columns.get("latency_ms")
        if latency is not None:
            old = ServiceMetrics.from_dict(window.service) if window.service else ServiceMetrics()
            window.service = old.observe(latency, columns.get("errors", 0)).to_dict()
    window.rows += rows
    result["rows"] = rows
    return current, result


def _fold_labels(batch: TelemetryBatch) -> dict[str, Any]:
    deployment = batch.deployment
    labels = dict(zip(batch.payload["prediction_ids"], batch.payload["labels"], strict=True))
    records = list(
        PredictionRecord.objects.select_for_update()
        .filter(deployment=deployment, prediction_id__in=list(labels))
        .order_by("window_id", "pk")
    )
    threshold = config_for(deployment).classification_threshold
    by_window: dict[int, list[PredictionRecord]] = {}
    for r in records:
        by_window.setdefault(r.window_id, []).append(r)
    windows = WindowProfile.objects.select_for_update().filter(pk__in=list(by_window))
    for window in windows.order_by("pk"):
        group = by_window[window.pk]
        performance.add(
            window.performance,
            [r.value for r in group],
            [labels[r.prediction_id] for r in group],
            threshold,
        )
        window.version += 1
        window.dirty = True
        window.save(update_fields=["performance", "version", "dirty", "updated_at"])
    PredictionRecord.objects.filter(pk__in=[r.pk for r in records]).delete()
    return {"matched": len(records), "unmatched": len(labels) - len(records)}


def fold_stragglers(older_than_s: int = 120) -> int:
    """Queue the fold of batches whose task was lost (the broker's problem, not ours)."""
    from workers.tasks import fold_telemetry_batch

    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    ids = list(
        TelemetryBatch.objects.filter(folded_at__isnull=True, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:1000]
    )
    for pk in ids:
        fold_telemetry_batch.delay(pk)
    return len(ids)


def prune(now: datetime | None = None) -> dict[str, int]:
    """Drop folded batches past their retention and predictions past the label horizon."""
    now = now or timezone.now()
    batches = TelemetryBatch.objects.filter(
        folded_at__isnull=False,
        received_at__lt=now - timedelta(days=settings.CHARTER_TELEMETRY_BATCH_RETENTION_DAYS),
    ).delete()[0]
    predictions = PredictionRecord.objects.filter(
        created_at__lt=now - timedelta(days=settings.CHARTER_TELEMETRY_LABEL_HORIZON_DAYS)
    ).delete()[0]
    return {"batches": batches, "predictions": predictions}


# ---------------------------------------------------------------- evaluation


def _feature_results(
    reference: DatasetProfile, current: DatasetProfile, config: DriftConfig
) -> list[dict[str, Any]]:
    out = []
    for name, ref_fp in reference.features.items():
        cur = current[name]
        try:
            fd = feature_drift_from_profiles(ref_fp, cur, config).to_dict()
        except ValueError as exc:
            fd = {
                "feature": name,
                "kind": ref_fp.kind,
                "method": None,
                "score": None,
                "threshold": None,
                "drifted": False,
                "n_current": cur.n,
                "error": str(exc),
            }
        out.append(fd)
    return out


def evaluate_window(window_id: int, *, alerts: bool | None = None) -> DriftResult | None:
    """Compute (or recompute) a window's drift result; then, for a closed window, run the
    deployment's alert rules on it. Idempotent: one result per window, replaced."""
    window = WindowProfile.objects.select_related("deployment").filter(pk=window_id).first()
    if window is None:
        return None
    deployment = window.deployment
    ref = reference_for(deployment)
    cfg = config_for(deployment)
    config = drift_config_of(cfg)
    version = window.version
    features: list[dict[str, Any]] = []
    quality: dict[str, Any] = {}
    prediction = None
    if ref is not None and window.profile is not None and window.rows:
        reference = inputs_of(ref)
        current = DatasetProfile.from_dict(window.profile)
        features = _feature_results(reference, current, config)
        quality = data_quality(reference, current).to_dict()
        if window.predictions is not None:
            cur_pred = FeatureProfile.from_dict(PREDICTION, window.predictions)
            base = None
            if ref.prediction_column:
                base = parsed_reference(ref)[ref.prediction_column]
            elif cfg.prediction_baseline:
                base = FeatureProfile.from_dict(PREDICTION, cfg.prediction_baseline)
            if base is not None:
                try:
                    prediction = feature_drift_from_profiles(base, cur_pred, config).to_dict()
                except ValueError as exc:
                    prediction = {"error": str(exc), "drifted": False}
                prediction["baseline"] = (
                    "reference" if ref.prediction_column else "first predictions"
                )
    judged = [f for f in features if f.get("method")]
    n_drifted = sum(1 for f in judged if f["drifted"])
    share = n_drifted / len(judged) if judged else 0.0
    service = ServiceMetrics.from_dict(window.service).summary() if window.service else {}
    with transaction.atomic():
        result, _ = DriftResult.objects.update_or_create(
            window=window,
            defaults={
                "deployment": deployment,
                "use_case_id": window.use_case_id,
                "window_start": window.start,
                "window_end": window.end,
                "rows": window.rows,
                "dataset_drift": bool(judged) and share >= config.drift_share,
                "share_drifted": share,
                "n_drifted": n_drifted,
                "features": features,
                "prediction": prediction,
                "quality": quality,
                "service": service,
                "performance": performance.summary(window.performance),
                "config": config.to_dict(),
                "computed_at": timezone.now(),
            },
        )
        WindowProfile.objects.filter(pk=window.pk, version=version).update(dirty=False)
    closed = window.end <= timezone.now()
    if alerts if alerts is not None else closed:
        evaluate_rules(result)
    return result


def evaluate_closed_windows(now: datetime | None = None, limit: int = 500) -> int:
    """Evaluate every closed window whose result is missing or behind (Celery beat)."""
    now = now or timezone.now()
    ids = list(
        WindowProfile.objects.filter(dirty=True, end__lte=now)
        .order_by("end")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        evaluate_window(pk)
    return len(ids)


# ---------------------------------------------------------------- alert rules


RULE_FIELDS = {
    "name",
    "kind",
    "feature",
    "metric",
    "threshold",
    "min_rows",
    "severity",
    "action",
    "enabled",
}


def _validate_rule(rule: AlertRule) -> None:
    errors: dict[str, str] = {}
    kind = rule.kind
    if kind == AlertRule.Kind.METRIC_FLOOR and rule.metric not in AlertRule.METRICS:
        errors["metric"] = f"expected one of {list(AlertRule.METRICS)}"
    if kind != AlertRule.Kind.METRIC_FLOOR and rule.metric:
        errors["metric"] = "only a metric_floor rule has a metric"
    if kind in (AlertRule.Kind.METRIC_FLOOR, AlertRule.Kind.LATENCY_P95, AlertRule.Kind.ERROR_RATE):
        if rule.threshold is None:
            errors["threshold"] = "this kind of rule needs a threshold"
        elif not math.isfinite(rule.threshold) or rule.threshold < 0:
            errors["threshold"] = "expected a finite, non-negative number"
    if kind == AlertRule.Kind.DRIFT and rule.feature:
        ref = reference_for(rule.deployment)
        if ref is not None and rule.feature not in ref.feature_names:
            errors["feature"] = f"'{rule.feature}' is not a feature of the reference profile"
    if kind != AlertRule.Kind.DRIFT and rule.feature:
        errors["feature"] = "only a drift rule watches one feature"
    if errors:
        raise ValidationError(errors)


def _rule_audit(rule: AlertRule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in sorted(RULE_FIELDS)}


@transaction.atomic
def create_alert_rule(access: Access, deployment: Deployment, **data: Any) -> AlertRule:
    access.require_contribute(deployment.use_case)
    unknown = set(data) - RULE_FIELDS
    if unknown:
        raise ValidationError({k: "cannot be set here" for k in unknown})
    rule = AlertRule(deployment=deployment, use_case_id=deployment.use_case_id, **data)
    rule.created_by = access.actor if access.authenticated else None
    rule.full_clean(exclude=["deployment", "use_case"])
    _validate_rule(rule)
    rule.save()
    record(
        AuditEvent.Action.CREATE, actor=access.actor, obj=rule, changes={"after": _rule_audit(rule)}
    )
    return rule


@transaction.atomic
def update_alert_rule(access: Access, rule: AlertRule, **data: Any) -> AlertRule:
    access.require_contribute(rule.use_case)
    unknown = set(data) - RULE_FIELDS
    if unknown:
        raise ValidationError({k: "cannot be set here" for k in unknown})
    before = _rule_audit(rule)
    for key, value in data.items():
        setattr(rule, key, value)
    rule.full_clean(exclude=["deployment", "use_case"])
    _validate_rule(rule)
    after = _rule_audit(rule)
    changed = {k for k in after if after[k] != before[k]}
    if changed:
        rule.save()
        record(
            AuditEvent.Action.UPDATE,
            actor=access.actor,
            obj=rule,
            changes={
                "before": {k: before[k] for k in changed},
                "after": {k: after[k] for k in changed},
            },
        )
    return rule


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def rule_verdict(rule: AlertRule, result: DriftResult) -> tuple[bool, str, dict[str, Any]]:
    """Does ``rule`` fire on ``result``? ``(fires, summary, details)``."""
    kind = rule.kind
    details: dict[str, Any] = {
        "window": result.window_id,
        "window_start": result.window_start.isoformat(),
        "window_end": result.window_end.isoformat(),
        "rows": result.rows,
    }
    if kind == AlertRule.Kind.DRIFT:
        if result.rows < rule.min_rows or not result.features:
            return False, "", details
        if rule.feature:
            fd = next((f for f in result.features if f["feature"] == rule.feature), None)
            if fd is None or not fd.get("drifted"):
                return False, "", details
            details["feature"] = fd
            return (
                True,
                f"feature '{rule.feature}' drifted ({fd['method']} {_fmt(fd['score'])} vs "
                f"threshold {_fmt(fd['threshold'])})",
                details,
            )
        details.update(
            drifted=result.drifted_features,
            share_drifted=result.share_drifted,
            drift_share=result.config.get("drift_share"),
        )
        if not result.dataset_drift:
            return False, "", details
        return (
            True,
            f"data drift: {result.n_drifted} of {len(result.features)} features drifted "
            f"({', '.join(result.drifted_features)})",
            details,
        )
    if kind == AlertRule.Kind.PREDICTION_DRIFT:
        pd = result.prediction or {}
        details["prediction"] = pd
        if result.rows < rule.min_rows or not pd.get("drifted"):
            return False, "", details
        return True, f"prediction drift ({pd['method']} {_fmt(pd['score'])})", details
    if kind == AlertRule.Kind.METRIC_FLOOR:
        perf = result.performance or {}
        value = perf.get(rule.metric)
        details.update(metric=rule.metric, value=value, floor=rule.threshold, **perf)
        if value is None or perf.get("labelled", 0) < rule.min_rows:
            return False, "", details
        if value >= rule.threshold:
            return False, "", details
        return True, f"{rule.metric} {value:.3f} below the floor {rule.threshold:g}", details
    service = result.service or {}
    if service.get("requests", 0) < rule.min_rows:
        return False, "", details
    if kind == AlertRule.Kind.LATENCY_P95:
        p95 = (service.get("latency_ms") or {}).get("p95")
        details.update(p95_ms=p95, budget_ms=rule.threshold)
        if p95 is None or p95 <= rule.threshold:
            return False, "", details
        return True, f"latency p95 {p95:.0f} ms over the {rule.threshold:g} ms budget", details
    rate = service.get("error_rate", 0.0)
    details.update(error_rate=rate, budget=rule.threshold, errors=service.get("errors"))
    if rate <= rule.threshold:
        return False, "", details
    return True, f"error rate {rate:.2%} over the {rule.threshold:.2%} budget", details


def evaluate_rules(result: DriftResult) -> list[Incident]:
    """Run the deployment's enabled rules on a window's result; open or update incidents."""
    fired = []
    rules = AlertRule.objects.filter(deployment_id=result.deployment_id, enabled=True)
    for rule in rules.select_related("deployment__model_version__model", "use_case"):
        fires, summary, details = rule_verdict(rule, result)
        if fires:
            fired.append(fire(rule, summary, details))
    return fired


# ---------------------------------------------------------------- incidents


def owners_of(use_case: UseCase, deployment: Deployment | None = None) -> list[Any]:
    """Who hears about an incident: the use case's owners and whoever released the deployment."""
    people = [use_case.business_owner, use_case.technical_owner]
    if deployment is not None:
        people.append(deployment.released_by)
    seen, out = set(), []
    for user in people:
        if user is not None and user.is_active and user.pk not in seen:
            seen.add(user.pk)
            out.append(user)
    return out


def _event(
    incident: Incident, kind: str, text: str, actor: Any = None, **data: Any
) -> IncidentEvent:
    if actor is not None and getattr(actor, "is_anonymous", False):
        actor = None
    return IncidentEvent.objects.create(
        incident=incident, kind=kind, text=text, actor=actor, data=data, at=timezone.now()
    )


def _incident_audit(incident: Incident) -> dict[str, Any]:
    return {
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "deployment": incident.deployment_id,
        "rule": incident.rule_id,
        "retraining_requested": incident.retraining_requested,
        "rollback_review": incident.rollback_review,
    }


def _notify_owners(incident: Incident, text: str) -> None:
    users = owners_of(incident.use_case, incident.deployment)
    notify(users, text, incident.get_absolute_url(), incident.use_case)
    _event(
        incident,
        IncidentEvent.Kind.NOTIFIED,
        f"Notified {', '.join(u.get_username() for u in users) or 'nobody (no owners)'}",
        users=[u.get_username() for u in users],
    )


def fire(rule: AlertRule, summary: str, details: dict[str, Any]) -> Incident:
    """Open an incident for ``rule``, or update the open one (one open incident per rule)."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return _fire(rule, summary, details)
        except IntegrityError:  # another worker opened it at the same moment: update that one
            continue
    raise RuntimeError(f"could not open or update the incident of rule {rule.pk}")


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fire(rule: AlertRule, summary: str, details: dict[str, Any]) -> Incident:
    now = timezone.now()
    deployment = rule.deployment
    incident = (
        Incident.objects.select_for_update(of=("self",))
        .filter(rule=rule, closed_at__isnull=True)
        .select_related("use_case", "deployment")
        .first()
    )
    if incident is not None:
        if incident.details.get("window_start") == details.get("window_start"):
            incident.details = details  # the same window re-evaluated: no new occurrence
            incident.save(update_fields=["details"])
            return incident
        incident.occurrences += 1
        incident.last_seen_at = now
        incident.details = details
        incident.save(update_fields=["occurrences", "last_seen_at", "details"])
        last = incident.events.order_by("-at", "-pk").first()
        if last is not None and last.kind == IncidentEvent.Kind.RECURRED:
            # consecutive firings make one timeline line: "fired again n times, latest: …"
            times = last.data.get("times", 1) + 1
            last.text = f"{summary} (fired {times} times in a row)"
            last.data = {**details, "times": times, "first_at": last.data.get("first_at")}
            last.at = now
            last.save(update_fields=["text", "data", "at"])
        else:
            _event(
                incident,
                IncidentEvent.Kind.RECURRED,
                summary,
                times=1,
                first_at=now.isoformat(),
                **details,
            )
        return incident
    title = f"{rule.name}: {summary}"[:300]
    incident = Incident.objects.create(
        use_case_id=rule.use_case_id,
        deployment=deployment,
        rule=rule,
        title=title,
        description=(
            f"Alert rule '{rule.name}' fired on deployment #{deployment.pk} ({deployment}) "
            f"for the window {_when(details['window_start'])} – {_when(details['window_end'])}."
        ),
        severity=rule.severity,
        details=details,
        opened_at=now,
        last_seen_at=now,
    )
    record(
        AuditEvent.Action.CREATE,
        actor=None,
        obj=incident,
        changes={"after": _incident_audit(incident), "reason": summary},
    )
    _event(incident, IncidentEvent.Kind.OPENED, summary, rule=rule.name, **details)
    _notify_owners(incident, f"Incident ({incident.severity}): {title}")
    system = Access.system()
    if rule.action == AlertRule.Action.RETRAIN:
        _request_retraining(system, incident, f"rule '{rule.name}' asks for retraining")
    elif rule.action == AlertRule.Action.ROLLBACK_REVIEW:
        _flag_rollback(system, incident, f"rule '{rule.name}' asks for a rollback review")
    return incident


def can_handle(access: Access, use_case: UseCase) -> bool:
    """Who may acknowledge, close and act on incidents: contributors to the use case and
    whoever may change it (risk officers, owners, admins)."""
    return access.can_contribute(use_case) or access.can_change_use_case(use_case)


def _require_handle(access: Access, incident: Incident) -> None:
    if not can_handle(access, incident.use_case):
        raise PermissionDenied("you may not act on incidents of this use case")


def _audit_change(access: Access, incident: Incident, before: dict[str, Any], reason: str) -> None:
    after = _incident_audit(incident)
    changed = {k for k in after if after[k] != before[k]}
    record(
        AuditEvent.Action.UPDATE,
        actor=access.actor,
        obj=incident,
        changes={
            "before": {k: before[k] for k in changed},
            "after": {k: after[k] for k in changed},
            "reason": reason,
        },
    )


@transaction.atomic
def open_incident(
    access: Access,
    deployment: Deployment,
    *,
    title: str,
    severity: str = "medium",
    description: str = "",
) -> Incident:
    """A person reports an incident on a deployment."""
    access.require_view(deployment.use_case)
    _require_handle_use_case(access, deployment.use_case)
    now = timezone.now()
    incident = Incident(
        use_case_id=deployment.use_case_id,
        deployment=deployment,
        title=title,
        description=description,
        severity=severity,
        opened_at=now,
        last_seen_at=now,
        opened_by=access.actor if access.authenticated else None,
    )
    incident.full_clean()
    incident.save()
    record(
        AuditEvent.Action.CREATE,
        actor=access.actor,
        obj=incident,
        changes={"after": _incident_audit(incident)},
    )
    _event(incident, IncidentEvent.Kind.OPENED, description or title, actor=access.actor)
    _notify_owners(incident, f"Incident ({severity}) reported: {title}")
    return incident


def _require_handle_use_case(access: Access, use_case: UseCase) -> None:
    if not can_handle(access, use_case):
        raise PermissionDenied("you may not act on incidents of this use case")


def _locked(incident: Incident) -> Incident:
    return (
        Incident.objects.select_for_update(of=("self",))
        .select_related("use_case", "deployment")
        .get(pk=incident.pk)
    )


@transaction.atomic
def acknowledge_incident(access: Access, incident: Incident, *, note: str = "") -> Incident:
    incident = _locked(incident)
    _require_handle(access, incident)
    if incident.status != Incident.Status.OPEN:
        raise Conflict(f"the incident is {incident.status}, not open", "status")
    before = _incident_audit(incident)
    incident.status = Incident.Status.ACKNOWLEDGED
    incident.acknowledged_at = timezone.now()
    incident.acknowledged_by = access.actor
    incident.save()
    _audit_change(access, incident, before, note)
    _event(incident, IncidentEvent.Kind.ACKNOWLEDGED, note, actor=access.actor)
    return incident


@transaction.atomic
def close_incident(access: Access, incident: Incident, *, resolution: str) -> Incident:
    incident = _locked(incident)
    _require_handle(access, incident)
    if incident.closed_at is not None:
        raise Conflict("the incident is already closed", "status")
    if not resolution.strip():
        raise ValidationError({"resolution": "say how the incident was resolved"})
    before = _incident_audit(incident)
    incident.status = Incident.Status.CLOSED
    incident.closed_at = timezone.now()
    incident.closed_by = access.actor
    incident.resolution = resolution
    incident.save()
    _audit_change(access, incident, before, resolution)
    _event(incident, IncidentEvent.Kind.CLOSED, resolution, actor=access.actor)
    return incident


@transaction.atomic
def comment_incident(access: Access, incident: Incident, *, text: str) -> IncidentEvent:
    incident = _locked(incident)
    _require_handle(access, incident)
    if not text.strip():
        raise ValidationError({"text": "write something"})
    record(
        AuditEvent.Action.UPDATE,
        actor=access.actor,
        obj=incident,
        changes={"comment": text[:2000]},
    )
    return _event(incident, IncidentEvent.Kind.COMMENT, text[:5000], actor=access.actor)


def _request_retraining(access: Access, incident: Incident, reason: str) -> Incident:
    if incident.retraining_requested:
        return incident
    before = _incident_audit(incident)
    incident.retraining_requested = True
    incident.save(update_fields=["retraining_requested"])
    _audit_change(access, incident, before, reason)
    from workers import retraining

    job, note = retraining.request_for_incident(access, incident, reason)
    _event(
        incident,
        IncidentEvent.Kind.RETRAINING,
        f"{reason}; {note}",
        actor=access.actor,
        job=job.pk if job is not None else None,
    )
    return incident


def _flag_rollback(access: Access, incident: Incident, reason: str) -> Incident:
    if incident.rollback_review:
        return incident
    before = _incident_audit(incident)
    incident.rollback_review = True
    incident.save(update_fields=["rollback_review"])
    _audit_change(access, incident, before, reason)
    _event(incident, IncidentEvent.Kind.ROLLBACK, reason, actor=access.actor)
    notify(
        owners_of(incident.use_case, incident.deployment),
        f"Deployment #{incident.deployment_id} flagged for rollback review: {incident.title}",
        incident.get_absolute_url(),
        incident.use_case,
    )
    return incident


@transaction.atomic
def request_retraining(access: Access, incident: Incident, *, reason: str = "") -> Incident:
    """Record that a retraining job is wanted (the retraining issue consumes the flag)."""
    incident = _locked(incident)
    _require_handle(access, incident)
    if incident.closed_at is not None:
        raise Conflict("the incident is closed", "status")
    return _request_retraining(access, incident, reason or "retraining requested")


@transaction.atomic
def flag_rollback_review(access: Access, incident: Incident, *, reason: str = "") -> Incident:
    incident = _locked(incident)
    _require_handle(access, incident)
    if incident.closed_at is not None:
        raise Conflict("the incident is closed", "status")
    if incident.deployment_id is None:
        raise ValidationError({"deployment": "the incident is not about a deployment"})
    return _flag_rollback(access, incident, reason or "flagged for rollback review")


def visible_incidents(access: Access) -> QuerySet[Incident]:
    return access.filter(Incident.objects.select_related("use_case", "deployment"))
