"""Import registered models from an MLflow tracking server into the registry.

Per MLflow registered model, a Charter :class:`~registry.models.Model` (same name, in
the use case given or named by the registered model's ``charter.use_case`` tag); per
MLflow model version, a :class:`~registry.models.ModelVersion` carrying its run's
parameters and metrics, the code commit (``mlflow.source.git.commit``), the run's input
datasets as dataset versions linked by their context (training / validation / test),
and its files as an unsigned :class:`~registry.models.Artifact` when a digest is known.

Every write goes through ``registry.services``, so each is permission-checked and
audited. The MLflow identity is kept in ``parameters["mlflow"]`` (``model``,
``version``, ``run_id``, ``source``), which is how a later import finds the version
again: importing twice changes nothing the second time (no new audit events). The
import only adds to what Charter holds: parameters, metrics and dataset links added in
Charter stay, and a Charter version of the same name that did not come from MLflow is
left alone (reported).

What has no place in Charter is reported, not stored: aliases (Charter records what
runs where as deployments), tags other than ``charter.*`` and the ``mlflow.*`` source
tags, version descriptions, and artifact digests MLflow does not keep.
"""

from __future__ import annotations

import hashlib
import json
import math
import mimetypes
import re
import tempfile
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, transaction

from audits import context
from audits.models import AuditEvent
from portal.permissions import Access
from registry import services
from registry.models import (
    Artifact,
    Dataset,
    DatasetVersion,
    MlflowImportJob,
    Model,
    ModelVersion,
    UseCase,
)

MLFLOW_KEY = "mlflow"
USE_CASE_TAG = "charter.use_case"
VERSION_TAG = "charter.version"
DIGEST_TAGS = ("charter.sha256", "sha256")
SIZE_TAG = "charter.size_bytes"
COMMIT_TAG = "mlflow.source.git.commit"
REPO_TAG = "mlflow.source.git.repoURL"
ENVIRONMENT_TAGS = ("mlflow.source.name", "mlflow.source.type", "mlflow.user", "mlflow.runName")
CONSUMED_TAGS = {USE_CASE_TAG, VERSION_TAG, SIZE_TAG, *DIGEST_TAGS}
ROLE_BY_CONTEXT = {
    "training": "training_datasets",
    "train": "training_datasets",
    "validation": "validation_datasets",
    "valid": "validation_datasets",
    "eval": "validation_datasets",
    "evaluation": "validation_datasets",
    "test": "test_datasets",
    "testing": "test_datasets",
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PAGE = 200


class MlflowUnavailable(RuntimeError):
    """The ``mlflow`` package is not installed where the import runs."""


class _Skip(Exception):
    """This item cannot be imported; the message says why."""


# ---------------------------------------------------------------- the report


@dataclass
class ImportReport:
    """What an import mapped, and what it could not (``not_mapped``, ``errors``)."""

    tracking_uri: str
    dry_run: bool = False
    models: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    not_mapped: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    audit_events: int = 0

    def skip(self, what: str, why: str) -> None:
        self.not_mapped.append({"what": what, "why": why})

    def fail(self, what: str, why: str) -> None:
        self.errors.append({"what": what, "why": why})

    def counts(self) -> dict[str, dict[str, int]]:
        def tally(rows: list[dict[str, Any]]) -> dict[str, int]:
            out: dict[str, int] = {}
            for row in rows:
                out[row["action"]] = out.get(row["action"], 0) + 1
            return out

        return {
            "models": tally(self.models),
            "versions": tally(self.versions),
            "datasets": tally(self.datasets),
        }

    @property
    def changed(self) -> bool:
        return self.audit_events > 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts()}

    def summary(self) -> str:
        lines = [
            f"MLflow import from {self.tracking_uri}"
            + (" (dry run: nothing was saved)" if self.dry_run else "")
        ]
        for kind, tally in self.counts().items():
            parts = ", ".join(f"{n} {action}" for action, n in sorted(tally.items())) or "none"
            lines.append(f"  {kind}: {parts}")
        lines.append(f"  audit events written: {self.audit_events}")
        for row in self.versions:
            extra = f" — {'; '.join(row['notes'])}" if row["notes"] else ""
            lines.append(
                f"  {row['action']:>9}  {row['model']} v{row['mlflow_version']} → "
                f"{row['model']}@{row['version']}{extra}"
            )
        if self.not_mapped:
            lines.append("Not mapped:")
            lines += [f"  {s['what']}: {s['why']}" for s in self.not_mapped]
        if self.errors:
            lines.append("Could not import:")
            lines += [f"  {e['what']}: {e['why']}" for e in self.errors]
        return "\n".join(lines)


def redact(uri: str) -> str:
    """The URI without a password (for reports, logs and the audit trail)."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# ---------------------------------------------------------------- helpers


def _audit_head() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def _written_since(seq: int) -> int:
    """Audit events this import wrote after ``seq`` (by its request id: other writers'
    events in between do not count)."""
    return AuditEvent.objects.filter(seq__gt=seq, request_id=context.current().request_id).count()


def _pages(fetch: Callable[..., Any]) -> Iterator[Any]:
    token = None
    while True:
        page = fetch(max_results=_PAGE, page_token=token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _local_path(uri: str) -> Path | None:
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


def tree_digest(path: Path) -> tuple[str, int, int]:
    """(sha256, total bytes, files) of a file, or of a directory as the SHA-256 of its
    ``sha256sum``-style manifest: ``"<hex>  <relative posix path>\\n"`` per file, sorted
    by path."""
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest(), path.stat().st_size, 1
    lines, total = [], 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        sha, size, _ = tree_digest(file)
        lines.append(f"{sha}  {file.relative_to(path).as_posix()}\n")
        total += size
    if not lines:
        raise _Skip(f"no files under {path}")
    return hashlib.sha256("".join(lines).encode()).hexdigest(), total, len(lines)


def _source_uri(source: str) -> str:
    """MLflow dataset sources are JSON ({"uri": …}, {"url": …}, {"path": …}, …)."""
    try:
        data = json.loads(source)
    except (TypeError, ValueError):
        return str(source or "")
    if isinstance(data, dict):
        for key in ("uri", "url", "path", "table_name", "delta_table_name", "name"):
            if data.get(key):
                return str(data[key])
    return str(source)


def _schema(schema: str) -> list[dict[str, str]]:
    """Column names and types from an MLflow ``mlflow_colspec`` schema (tensors: none)."""
    try:
        data = json.loads(schema or "{}")
        spec = data.get("mlflow_colspec")
        columns = json.loads(spec) if isinstance(spec, str) else spec
    except (TypeError, ValueError, AttributeError):
        return []
    out, seen = [], set()
    for column in columns or []:
        if isinstance(column, dict) and isinstance(column.get("name"), str):
            if column["name"] in seen:
                continue
            seen.add(column["name"])
            out.append({"name": column["name"], "type": str(column.get("type", "unknown"))})
    return out


def _row_count(profile: str) -> int | None:
    try:
        data = json.loads(profile or "{}")
    except (TypeError, ValueError):
        return None
    rows = data.get("num_rows") if isinstance(data, dict) else None
    return rows if isinstance(rows, int) and rows >= 0 else None


# ---------------------------------------------------------------- the import


class _Importer:
    def __init__(
        self,
        access: Access,
        client: Any,
        report: ImportReport,
        *,
        use_case: UseCase | None,
        download_artifacts: bool,
    ) -> None:
        self.access = access
        self.client = client
        self.report = report
        self.use_case = use_case
        self.download_artifacts = download_artifacts
        self._datasets_seen: set[int] = set()

    # -- use cases and models

    def use_case_for(self, rm: Any) -> UseCase:
        if self.use_case is not None:
            return self.use_case
        tag = (rm.tags or {}).get(USE_CASE_TAG, "").strip()
        if not tag:
            raise _Skip(f"no use case: pass --use-case or tag the registered model {USE_CASE_TAG}")
        visible = self.access.filter(UseCase.objects.all())
        found = visible.filter(pk=int(tag)).first() if tag.isdigit() else None
        found = found or visible.filter(name=tag).first()
        if found is None:
            raise _Skip(f"{USE_CASE_TAG}={tag!r} names no use case you may see")
        return found

    def model(self, rm: Any, use_case: UseCase) -> Model:
        description = rm.description or ""
        model = Model.objects.filter(use_case=use_case, name=rm.name).first()
        before = _audit_head()
        if model is None:
            model = services.create_model(
                self.access, use_case=use_case, name=rm.name, description=description
            )
            action = "created"
        else:
            if description and description != model.description:
                services.update_model(self.access, model, description=description)
            action = "updated" if _written_since(before) else "unchanged"
        self.report.models.append(
            {"name": rm.name, "use_case": use_case.pk, "id": model.pk, "action": action}
        )
        for key, value in sorted((rm.tags or {}).items()):
            if key not in CONSUMED_TAGS:
                self.report.skip(
                    f"tag {key}={value!r} of registered model {rm.name}",
                    "Charter models have no free-form tags",
                )
        return model

    # -- datasets

    def dataset_version(
        self, use_case: UseCase, dataset_input: Any, where: str, notes: list[str]
    ) -> tuple[DatasetVersion, str]:
        ds = dataset_input.dataset
        tags = {t.key: t.value for t in (dataset_input.tags or [])}
        context = str(tags.get("mlflow.data.context", "")).strip().lower()
        role = ROLE_BY_CONTEXT.get(context)
        if role is None:
            role = "training_datasets"
            notes.append(
                f"dataset {ds.name!r}: context {context or 'none'!r} linked as training data"
            )
        name = (ds.name or "dataset")[:200]
        digest = (ds.digest or "")[:64]
        if not digest:
            raise _Skip(f"dataset {name!r} of {where} has no digest")
        before = _audit_head()
        dataset = Dataset.objects.filter(use_case=use_case, name=name).first()
        if dataset is None:
            dataset = services.create_dataset(
                self.access,
                use_case=use_case,
                name=name,
                description=f"Imported from MLflow (source type: {ds.source_type or 'unknown'}).",
            )
        version = DatasetVersion.objects.filter(dataset=dataset, version=digest).first()
        if version is None:
            version = services.create_dataset_version(
                self.access,
                dataset=dataset,
                version=digest,
                uri=_source_uri(ds.source)[:1000],
                schema=_schema(ds.schema),
                row_count=_row_count(ds.profile),
                maintenance=(
                    f"MLflow dataset digest {digest} (MLflow's own hash, not a SHA-256 of "
                    "the content); register the file with Charter to record one."
                ),
            )
        if version.pk not in self._datasets_seen:
            self._datasets_seen.add(version.pk)
            self.report.datasets.append(
                {
                    "name": name,
                    "version": digest,
                    "id": version.pk,
                    "uri": version.uri,
                    "action": "created" if _written_since(before) else "unchanged",
                }
            )
        return version, role

    # -- artifacts

    def artifact_location(self, mv: Any, run: Any) -> str:
        source = mv.source or ""
        if source.startswith("runs:/") and run is not None:
            rest = source[len("runs:/") :].split("/", 1)
            sub = rest[1] if len(rest) > 1 else ""
            return f"{run.info.artifact_uri.rstrip('/')}/{sub}".rstrip("/")
        if source.startswith("models:/"):
            # MLflow 3 logged models: models:/m-<id> (the version's model_id may be unset)
            model_id = getattr(mv, "model_id", None) or source[len("models:/") :].split("/")[0]
            if model_id.startswith("m-"):
                try:
                    return str(self.client.get_logged_model(model_id).artifact_location)
                except Exception:  # noqa: BLE001  (an unreachable logged model: keep the source)
                    return source
        return source

    def digest(self, mv: Any, location: str) -> tuple[str, int, str] | None:
        tags = mv.tags or {}
        for key in DIGEST_TAGS:
            value = str(tags.get(key, "")).strip().lower().removeprefix("sha256:")
            if _HEX64.match(value):
                size = str(tags.get(SIZE_TAG, "")).strip()
                if size.isdigit():
                    return value, int(size), f"digest from MLflow tag {key}"
                path = _local_path(location)
                if path is not None and path.exists():
                    return value, tree_digest(path)[1], f"digest from MLflow tag {key}"
                return value, 0, f"digest from MLflow tag {key}; size unknown (recorded as 0)"
        path = _local_path(location)
        if path is not None and path.exists():
            sha, size, files = tree_digest(path)
            return sha, size, f"digest computed by Charter over {files} file(s)"
        if self.download_artifacts:
            import mlflow.artifacts

            with tempfile.TemporaryDirectory(prefix="charter-mlflow-") as tmp:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=location, dst_path=tmp, tracking_uri=self.client.tracking_uri
                )
                sha, size, files = tree_digest(Path(local))
            return sha, size, f"digest computed by Charter over {files} downloaded file(s)"
        return None

    def artifact(self, version: ModelVersion, mv: Any, run: Any, notes: list[str]) -> str:
        location = self.artifact_location(mv, run)
        if not location:
            notes.append("no artifact: MLflow has no source for this version")
            return "none"
        found = self.digest(mv, location)
        if found is None:
            notes.append(
                "artifact not recorded: MLflow keeps no digest of "
                f"{location} and its files are not reachable here (try --download-artifacts, "
                "or upload a signed artifact with the client)"
            )
            self.report.skip(f"artifact of {version}", f"no digest for {location}")
            return "not recorded"
        sha, size, how = found
        previous = (
            Artifact.objects.filter(model_version=version, uri=location)
            .order_by("-created_at")
            .first()
        )
        if previous is not None and previous.sha256 == sha:
            return "unchanged"
        path = Path(urllib.parse.urlsplit(location).path)
        name = path.parent.name if path.name == "artifacts" else path.name
        name = name or f"{version.model.name}-model"
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        services.add_artifact(
            self.access,
            model_version=version,
            name=name[:300],
            uri=location[:1000],
            sha256=sha,
            size_bytes=size,
            media_type=media,
        )
        notes.append(f"artifact recorded unsigned ({how}); sign it before a release")
        if previous is not None:
            notes.append("the artifact's files changed since the last import")
        return "recorded"

    # -- versions

    def version(self, rm: Any, model: Model, mv: Any, aliases: list[str]) -> None:
        number = int(mv.version)
        where = f"{rm.name} v{number}"
        notes: list[str] = []
        status = str(getattr(mv, "status", "READY") or "READY")
        if status != "READY":
            raise _Skip(f"MLflow status is {status}")
        run = None
        if mv.run_id:
            try:
                run = self.client.get_run(mv.run_id)
            except Exception as exc:  # noqa: BLE001  (MlflowException: a deleted or foreign run)
                notes.append(f"run {mv.run_id} not readable ({type(exc).__name__})")
        identity = {
            "model": rm.name,
            "version": number,
            "run_id": mv.run_id or None,
            "source": mv.source or "",
        }
        params: dict[str, Any] = dict(run.data.params) if run is not None else {}
        if MLFLOW_KEY in params:
            params[f"{MLFLOW_KEY} (run parameter)"] = params.pop(MLFLOW_KEY)
        metrics = {}
        for key, value in (run.data.metrics if run is not None else {}).items():
            if _finite(value) and key.strip() and len(key) <= 100:
                metrics[key] = value
            else:
                self.report.skip(f"metric {key}={value!r} of {where}", "not a finite number")
        tags = dict(run.data.tags) if run is not None else {}
        environment = {k: tags[k] for k in ENVIRONMENT_TAGS if tags.get(k)}
        label = str((mv.tags or {}).get(VERSION_TAG) or number)[:64]
        links: dict[str, list[DatasetVersion]] = {role: [] for role in services.DATASET_ROLES}
        for dataset_input in run.inputs.dataset_inputs if run is not None else []:
            dv, role = self.dataset_version(model.use_case, dataset_input, where, notes)
            if dv not in links[role]:
                links[role].append(dv)

        before = _audit_head()
        existing = ModelVersion.objects.filter(
            model=model,
            parameters__mlflow__model=rm.name,
            parameters__mlflow__version=number,
        ).first()
        fields: dict[str, Any] = {}
        if tags.get(COMMIT_TAG):
            fields["code_commit"] = tags[COMMIT_TAG][:64]
        if tags.get(REPO_TAG):
            fields["code_repository"] = tags[REPO_TAG][:500]
        if existing is None:
            clash = ModelVersion.objects.filter(model=model, version=label).first()
            if clash is not None:
                raise _Skip(
                    f"Charter already has {model.name}@{label}, not imported from MLflow; "
                    "left alone (tag the MLflow version charter.version to import it as another)"
                )
            version = services.register_model_version(
                self.access,
                model=model,
                version=label,
                parameters={**params, MLFLOW_KEY: identity},
                metrics=metrics,
                environment=environment,
                **fields,
                **links,
            )
        else:
            version = existing
            merged_links = {
                role: list({*getattr(existing, role).all(), *links[role]})
                for role in services.DATASET_ROLES
            }
            services.update_model_version(
                self.access,
                existing,
                version=label,
                parameters={**existing.parameters, **params, MLFLOW_KEY: identity},
                metrics={**existing.metrics, **metrics},
                environment={**existing.environment, **environment},
                **fields,
                **merged_links,
            )
        version_changed = _written_since(before) > 0
        artifact = self.artifact(version, mv, run, notes)
        for alias in aliases:
            self.report.skip(
                f"alias {alias!r} → {where}",
                "not stored: Charter records what runs where as deployments",
            )
        for key, value in sorted((mv.tags or {}).items()):
            if key not in CONSUMED_TAGS:
                self.report.skip(f"tag {key}={value!r} of {where}", "model version tags not kept")
        if mv.description:
            self.report.skip(f"description of {where}", "write it into the model card instead")
        if existing is None:
            action = "created"
        elif version_changed or _written_since(before):
            action = "updated"
        else:
            action = "unchanged"
        self.report.versions.append(
            {
                "model": rm.name,
                "mlflow_version": number,
                "version": label,
                "id": version.pk,
                "run_id": mv.run_id or None,
                "aliases": aliases,
                "datasets": {
                    role.removesuffix("_datasets"): [dv.pk for dv in items]
                    for role, items in links.items()
                    if items
                },
                "artifact": artifact,
                "action": action,
                "notes": notes,
            }
        )


def _mlflow_client(tracking_uri: str, registry_uri: str | None) -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise MlflowUnavailable(
            "importing from MLflow needs the mlflow package where Charter runs (pip install mlflow)"
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def _filter_value(name: str) -> str:
    if "'" not in name:
        return f"name = '{name}'"
    if '"' not in name:
        return f'name = "{name}"'
    raise _Skip("the name holds both quote characters; MLflow's filter syntax cannot say it")


def import_mlflow(
    access: Access,
    tracking_uri: str,
    *,
    use_case: UseCase | None = None,
    dry_run: bool = False,
    registry_uri: str | None = None,
    download_artifacts: bool = False,
    only: Iterable[str] | None = None,
) -> ImportReport:
    """Import every registered model (or those named in ``only``) and its versions.

    Each registered model is imported in its own transaction; a dry run rolls each back
    after building the report, so it shows exactly what a real run would write.
    """
    if use_case is not None:
        access.require_contribute(use_case)
    client = _mlflow_client(tracking_uri, registry_uri)
    report = ImportReport(tracking_uri=redact(tracking_uri), dry_run=dry_run)
    importer = _Importer(
        access, client, report, use_case=use_case, download_artifacts=download_artifacts
    )
    wanted = set(only) if only is not None else None
    ctx = context.current()
    with context.audit_context(**{**asdict(ctx), "request_id": ctx.request_id or uuid.uuid4().hex}):
        start = _audit_head()
        for rm in _pages(client.search_registered_models):
            if wanted is not None and rm.name not in wanted:
                continue
            try:
                with transaction.atomic():
                    before = _audit_head()
                    _import_registered_model(importer, client, rm)
                    if dry_run:
                        report.audit_events += _written_since(before)
                        transaction.set_rollback(True)
            except _Skip as exc:
                report.skip(f"registered model {rm.name}", str(exc))
            except (ValidationError, PermissionDenied, DatabaseError) as exc:
                report.fail(f"registered model {rm.name}", _message(exc))
        if not dry_run:
            report.audit_events = _written_since(start)
    if dry_run:
        for rows in (report.models, report.versions, report.datasets):
            for row in rows:
                if row["action"] == "created":
                    row["id"] = None
    return report


def _import_registered_model(importer: _Importer, client: Any, rm: Any) -> None:
    report = importer.report
    model = importer.model(rm, importer.use_case_for(rm))
    by_version: dict[int, list[str]] = {}
    for alias, number in (rm.aliases or {}).items():
        by_version.setdefault(int(number), []).append(alias)
    query = _filter_value(rm.name)
    versions = sorted(
        _pages(lambda **kw: client.search_model_versions(query, **kw)),
        key=lambda v: int(v.version),
    )
    for mv in versions:
        what = f"{rm.name} v{mv.version}"
        try:
            with transaction.atomic():
                importer.version(rm, model, mv, sorted(by_version.get(int(mv.version), [])))
        except _Skip as exc:
            report.skip(what, str(exc))
        except (ValidationError, PermissionDenied, DatabaseError) as exc:
            report.fail(what, _message(exc))


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return " ".join(exc.messages)
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------- jobs (the portal's form)


@transaction.atomic
def request_import(
    access: Access,
    *,
    tracking_uri: str,
    use_case: UseCase | None = None,
    dry_run: bool = False,
    download_artifacts: bool = False,
) -> MlflowImportJob:
    """Queue an import for a worker (administrators only); audited as the job's creation."""
    from audits.services import record
    from registry.tasks import run_mlflow_import

    if not access.can_administer():
        raise PermissionDenied("only administrators import from MLflow in the portal")
    tracking_uri = tracking_uri.strip()
    if tracking_uri_has_password(tracking_uri):
        raise ValidationError(
            {
                "tracking_uri": [
                    "leave the password out; give it to the workers instead "
                    "(MLFLOW_TRACKING_PASSWORD, ~/.pgpass)"
                ]
            }
        )
    job = MlflowImportJob(
        tracking_uri=tracking_uri,
        use_case=use_case,
        dry_run=dry_run,
        download_artifacts=download_artifacts,
        requested_by=access.actor if not access.is_system else None,
    )
    job.full_clean()
    job.save()
    record(
        AuditEvent.Action.CREATE,
        actor=access.actor,
        obj=job,
        changes={
            "after": {
                "tracking_uri": tracking_uri,
                "use_case": use_case.pk if use_case else None,
                "dry_run": dry_run,
                "download_artifacts": download_artifacts,
            }
        },
    )
    transaction.on_commit(lambda: run_mlflow_import.delay(job.pk))
    return job


def run_job(job_id: int) -> str:
    """Run a queued import as the person who asked for it and keep its report."""
    from django.utils import timezone

    job = MlflowImportJob.objects.select_related("requested_by", "use_case").filter(pk=job_id)
    job = job.first()
    if job is None or job.state == MlflowImportJob.State.DONE:
        return "gone" if job is None else job.state
    MlflowImportJob.objects.filter(pk=job.pk).update(
        state=MlflowImportJob.State.RUNNING, started_at=timezone.now()
    )
    access = Access(user=job.requested_by) if job.requested_by else Access.system()
    try:
        report = import_mlflow(
            access,
            job.tracking_uri,
            use_case=job.use_case,
            dry_run=job.dry_run,
            download_artifacts=job.download_artifacts,
        )
    except Exception as exc:  # noqa: BLE001  (the job page shows why; nothing half-written)
        MlflowImportJob.objects.filter(pk=job.pk).update(
            state=MlflowImportJob.State.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:5000],
            finished_at=timezone.now(),
        )
        return MlflowImportJob.State.FAILED
    MlflowImportJob.objects.filter(pk=job.pk).update(
        state=MlflowImportJob.State.DONE,
        report=report.as_dict(),
        summary=report.summary(),
        finished_at=timezone.now(),
    )
    return MlflowImportJob.State.DONE


def tracking_uri_has_password(uri: str) -> bool:
    try:
        return urllib.parse.urlsplit(uri).password is not None
    except ValueError:
        return False


__all__ = [
    "ImportReport",
    "MlflowUnavailable",
    "import_mlflow",
    "redact",
    "request_import",
    "run_job",
    "tracking_uri_has_password",
    "tree_digest",
]
