"""OpenLineage intake: validate, attribute, store append-only, materialise, audit.

:func:`ingest` takes a list of parsed events (one POST or a batch) and stores
them in one transaction: the raw events (``INSERT … ON CONFLICT DO NOTHING`` on
the SHA-256 of their canonical JSON (keys sorted, compact), so a repeated event is stored once), the
nodes and edges they state, and one ``lineage.event.ingest`` audit event per
newly stored event. A batch with any invalid event is refused as a whole.

**Which use case an event belongs to** (it decides who may see what it
created), in order:

1. a ``charter`` facet with ``useCase`` (id or name) on the run, the job, or a
   DatasetEvent's dataset;
2. else the caller's token, when it is scoped to exactly one use case;
3. else the one use case the caller may contribute to, when there is exactly one.

Otherwise the event is refused (400, naming ``run.facets.charter.useCase``). The
caller must be allowed to contribute to that use case (403 otherwise).

**Linking to the registry.** An input or output dataset is linked to a
registry dataset version the caller can see, by the first rule that matches:
a ``charter`` facet's ``datasetVersion`` id; its ``sha256`` (or a ``version``
facet whose ``datasetVersion`` is a 64-hex digest) equal to the version's
content digest; the dataset version whose ``uri`` is ``<namespace>/<name>``
(for the ``file`` namespace also ``file://<name>``), narrowed by the ``version``
facet when several match, else the latest created at or before the event
time; a registry dataset named ``<name>`` with a version named by the
``version`` facet. A ``charter`` facet's ``modelVersion`` id links a dataset to
a registry model version (a training run's output). A linked dataset's
edges attach to the registry node and a ``version`` edge joins the
OpenLineage dataset node to it; unlinked datasets keep ``linked = false``.
New OpenLineage nodes take the event's use case; existing nodes keep theirs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audits.services import record
from lineage.models import (
    EdgeKind,
    LineageEdge,
    LineageEvent,
    LineageNode,
    NodeKind,
    key_digest,
    node_key,
)
from lineage.validation import Checked, EventInvalid, check_event
from portal.db.compiled import CompiledQuery
from portal.permissions import Access
from registry.models import DatasetVersion, ModelVersion, UseCase

AUDIT_ACTION = "lineage.event.ingest"  # 20 characters: the audit column's width
MAX_BATCH = 1000
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}


class IngestRefused(Exception):
    """The caller may not write to the use case an event belongs to (HTTP 403)."""


def canonical_json(data: Any) -> bytes:
    """The event's canonical form: JSON with keys sorted, no whitespace, UTF-8 (Python's
    ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_sha256(data: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json`: the same event in any key order or spacing
    has the same digest."""
    return hashlib.sha256(canonical_json(data)).hexdigest()


# ---------------------------------------------------------------- specs


@dataclass
class NodeSpec:
    key: str
    kind: str
    namespace: str = ""
    name: str = ""
    object_id: int | None = None
    label: str = ""
    use_case_id: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    linked: bool | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def merge(self, other: NodeSpec) -> None:
        self.attrs.update(other.attrs)
        if other.linked:
            self.linked = True
        elif self.linked is None:
            self.linked = other.linked
        self.valid_from = _min(self.valid_from, other.valid_from)
        self.valid_to = _max(self.valid_to, other.valid_to)


@dataclass
class EdgeSpec:
    src: str
    dst: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    event_index: int = 0


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


# ---------------------------------------------------------------- facets → attributes


def _facet(facets: Any, name: str) -> dict[str, Any] | None:
    if isinstance(facets, dict):
        value = facets.get(name)
        if isinstance(value, dict) and value.get("_deleted") is not True:
            return value
    return None


def _dataset_attrs(ds: dict[str, Any]) -> dict[str, Any]:
    facets = ds.get("facets") or {}
    attrs: dict[str, Any] = {}
    schema = _facet(facets, "schema")
    if schema is not None:
        attrs["schema"] = [
            {"name": f.get("name"), "type": f.get("type", "")}
            for f in schema.get("fields") or []
            if isinstance(f, dict)
        ][:500]
    source = _facet(facets, "dataSource")
    if source is not None:
        attrs["dataSource"] = {k: source[k] for k in ("name", "uri") if k in source}
    doc = _facet(facets, "documentation")
    if doc is not None and isinstance(doc.get("description"), str):
        attrs["description"] = doc["description"][:2000]
    version = _facet(facets, "version")
    if version is not None:
        attrs["version"] = version.get("datasetVersion")
    return attrs


def _job_attrs(job: dict[str, Any]) -> dict[str, Any]:
    facets = job.get("facets") or {}
    attrs: dict[str, Any] = {}
    job_type = _facet(facets, "jobType")
    if job_type is not None:
        attrs["jobType"] = {
            k: job_type[k] for k in ("processingType", "integration", "jobType") if k in job_type
        }
    doc = _facet(facets, "documentation")
    if doc is not None and isinstance(doc.get("description"), str):
        attrs["description"] = doc["description"][:2000]
    code = _facet(facets, "sourceCodeLocation")
    if code is not None:
        attrs["sourceCodeLocation"] = {
            k: code[k] for k in ("type", "url", "repoUrl", "path", "version") if k in code
        }
    sql = _facet(facets, "sql")
    if sql is not None and isinstance(sql.get("query"), str):
        attrs["sql"] = sql["query"][:2000]
    return attrs


def _run_attrs(ev: Checked) -> dict[str, Any]:
    facets = (ev.data.get("run") or {}).get("facets") or {}
    attrs: dict[str, Any] = {}
    if ev.event_type:
        attrs["state"] = ev.event_type
        attrs[f"{ev.event_type.lower()}At"] = ev.data["eventTime"]
    nominal = _facet(facets, "nominalTime")
    if nominal is not None:
        attrs["nominalTime"] = {
            k: nominal[k] for k in ("nominalStartTime", "nominalEndTime") if k in nominal
        }
    error = _facet(facets, "errorMessage")
    if error is not None and isinstance(error.get("message"), str):
        attrs["errorMessage"] = error["message"][:2000]
    return attrs


def _charter_facet(ev: Checked) -> tuple[dict[str, Any] | None, str]:
    """Charter's facet that names the use case, and its path (for error messages)."""
    data = ev.data
    places = []
    if ev.kind == "RunEvent":
        places.append(("run", data.get("run")))
    if ev.kind in ("RunEvent", "JobEvent"):
        places.append(("job", data.get("job")))
    if ev.kind == "DatasetEvent":
        places.append(("dataset", data.get("dataset")))
    for path, holder in places:
        facet = _facet((holder or {}).get("facets"), "charter")
        if facet is not None and "useCase" in facet:
            return facet, f"{path}.facets.charter.useCase"
    default = {"RunEvent": "run", "JobEvent": "job", "DatasetEvent": "dataset"}[ev.kind]
    return None, f"{default}.facets.charter.useCase"


# ---------------------------------------------------------------- use case


#: a use case by id: compiled once per process (the token's use case, read per event)
_USE_CASE = CompiledQuery(lambda pk: UseCase.objects.filter(pk=pk))


def _use_case(pk: int) -> UseCase:
    found = _USE_CASE.first(pk)
    if found is None:
        raise UseCase.DoesNotExist(f"use case {pk} does not exist")
    return found


class _UseCases:
    """Resolves each event's use case, once per distinct answer in a request."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self._by_value: dict[Any, UseCase | None] = {}
        self._default: UseCase | None | bool = False
        self._may: list[int] | None | bool = False
        self._seen: list[int] | None | bool = False
        self._granted: dict[str, set[int]] | None = None

    def _grants(self) -> dict[str, set[int]]:
        """The caller's object grants (view, contribute) by use case: two queries, or none
        when they came with the request's API token (``portal.permissions.preload_user``)."""
        if self._granted is None:
            from portal.permissions import GRANTS_ATTR
            from registry.models import UseCaseGroupObjectPermission, UseCaseUserObjectPermission

            user = self.access.user
            codes = ("view_usecase", "contribute_usecase")
            preloaded = getattr(user, GRANTS_ATTR, None)
            if preloaded is not None:  # read with the request's API token: no queries
                self._granted = {
                    c: {pk for pk, names in preloaded.items() if c in names} for c in codes
                }
                return self._granted
            self._granted = {c: set() for c in codes}
            rows = list(
                UseCaseUserObjectPermission.objects.filter(
                    user=user, permission__codename__in=codes
                ).values_list("permission__codename", "content_object_id")
            ) + list(
                UseCaseGroupObjectPermission.objects.filter(
                    group__user=user, permission__codename__in=codes
                ).values_list("permission__codename", "content_object_id")
            )
            for code, pk in rows:
                self._granted[code].add(pk)
        return self._granted

    def _allowed(self, codename: str) -> list[int] | None:
        """Use case ids with ``codename`` (``Access.can_view`` / ``can_contribute`` for all
        use cases at once); None when it is every use case."""
        access = self.access
        scope = access.token_scope()
        if access.is_system or access._global(codename):
            return list(scope) if scope is not None else None
        if not access.authenticated or not access.user.is_active:
            return []
        ids = self._grants()[codename]
        if scope is not None:
            ids = ids & set(scope)
        return sorted(ids)

    def _contributable(self) -> list[int] | None:
        if self._may is False:
            self._may = self._allowed("contribute_usecase")
        return self._may  # type: ignore[return-value]

    def visible(self) -> list[int] | None:
        if self._seen is False:
            self._seen = self._allowed("view_usecase")
        return self._seen  # type: ignore[return-value]

    def default(self) -> UseCase | None:
        if self._default is False:
            found: UseCase | None = None
            scope = self.access.token_scope()
            if scope is not None and len(scope) == 1:
                found = _use_case(scope[0])
            else:
                ids = self._contributable()
                if ids is not None and len(ids) == 1:
                    found = _use_case(ids[0])
            self._default = found
        return self._default  # type: ignore[return-value]

    def named(self, value: Any) -> UseCase | None:
        if value not in self._by_value:
            qs = self.access.filter(UseCase.objects.all())
            if isinstance(value, int):
                self._by_value[value] = qs.filter(pk=value).first()
            else:
                self._by_value[value] = qs.filter(name=str(value).strip()).first()
        return self._by_value[value]

    def resolve(self, ev: Checked) -> UseCase:
        facet, path = _charter_facet(ev)
        if facet is not None:
            use_case = self.named(facet["useCase"])
            if use_case is None:
                raise EventInvalid({path: [f"unknown use case {facet['useCase']!r}"]})
        else:
            use_case = self.default()
            if use_case is None:
                raise EventInvalid(
                    {
                        path: [
                            "cannot tell which use case this event belongs to: add a 'charter' "
                            "facet with 'useCase' (id or name), or post with a token scoped "
                            "to one use case"
                        ]
                    }
                )
        allowed = self._contributable()
        if allowed is not None and use_case.pk not in allowed:
            raise IngestRefused(f"you may not record lineage under use case '{use_case}'")
        return use_case


# ---------------------------------------------------------------- registry links


def _dataset_refs(ev: Checked) -> Iterable[tuple[str, dict[str, Any]]]:
    data = ev.data
    if ev.kind == "DatasetEvent":
        yield "dataset", data["dataset"]
        return
    for role in ("inputs", "outputs"):
        for i, ds in enumerate(data.get(role) or []):
            yield f"{role}[{i}]", ds


def _uri_candidates(namespace: str, name: str) -> list[str]:
    out = [f"{namespace.rstrip('/')}/{name.lstrip('/')}"]
    if namespace == "file":
        out.append(f"file://{name}" if name.startswith("/") else f"file:///{name}")
    return out


@dataclass
class _DV:
    """What linking needs of a registry dataset version."""

    pk: int
    sha256: str
    uri: str
    version: str
    dataset_name: str
    created_at: datetime
    use_case_id: int
    sensitivity: str


@dataclass
class _Link:
    dataset_version: _DV | None = None
    model_version: ModelVersion | None = None


_SELECT_DVS = (
    "SELECT dv.id, dv.sha256, dv.uri, dv.version, d.name, dv.created_at, dv.use_case_id, "
    "dv.sensitivity FROM registry_datasetversion dv "
    "JOIN registry_dataset d ON d.id = dv.dataset_id "
    "WHERE (dv.id = ANY(%s) OR dv.sha256 = ANY(%s) OR (dv.uri <> '' AND dv.uri = ANY(%s)) "
    "OR d.name = ANY(%s)) AND (%s OR dv.use_case_id = ANY(%s))"
)


class _Linker:
    """Matches datasets of a whole batch to registry versions the caller can see, with one
    query (two when a ``charter`` facet names model versions)."""

    def __init__(self, access: Access, events: list[Checked], seen: list[int] | None) -> None:
        self.access = access
        dv_ids: set[int] = set()
        mv_ids: set[int] = set()
        shas: set[str] = set()
        uris: set[str] = set()
        names: set[str] = set()
        for ev in events:
            for _, ds in _dataset_refs(ev):
                facets = ds.get("facets") or {}
                charter = _facet(facets, "charter") or {}
                if "datasetVersion" in charter:
                    dv_ids.add(charter["datasetVersion"])
                if "modelVersion" in charter:
                    mv_ids.add(charter["modelVersion"])
                if "sha256" in charter:
                    shas.add(charter["sha256"])
                version = (_facet(facets, "version") or {}).get("datasetVersion")
                if isinstance(version, str) and len(version) == 64:
                    shas.add(version.lower())
                uris.update(_uri_candidates(ds["namespace"], ds["name"]))
                if version is not None:
                    names.add(ds["name"])
        self.versions = self._versions(seen, dv_ids, shas, uris, names)
        self.models: dict[int, ModelVersion] = {}
        if mv_ids:
            qs = ModelVersion.objects.select_related("model").filter(pk__in=mv_ids)
            if seen is not None:
                qs = qs.filter(use_case_id__in=seen)
            self.models = {mv.pk: mv for mv in qs}
        self.by_id = {dv.pk: dv for dv in self.versions}

    @staticmethod
    def _versions(
        seen: list[int] | None, ids: set[int], shas: set[str], uris: set[str], names: set[str]
    ) -> list[_DV]:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    _SELECT_DVS,
                    [list(ids), list(shas), list(uris), list(names), seen is None, seen or []],
                )
                return [_DV(*row) for row in cursor.fetchall()]
        query = Q(pk__in=ids) | Q(sha256__in=shas) | Q(uri__in=uris) | Q(dataset__name__in=names)
        qs = DatasetVersion.objects.select_related("dataset").filter(query)
        if seen is not None:
            qs = qs.filter(use_case_id__in=seen)
        return [
            _DV(dv.pk, dv.sha256, dv.uri, dv.version, dv.dataset.name, dv.created_at,
                dv.use_case_id, dv.sensitivity)
            for dv in qs
        ]  # fmt: skip

    def link(self, ev: Checked, path: str, ds: dict[str, Any]) -> _Link:
        facets = ds.get("facets") or {}
        charter = _facet(facets, "charter") or {}
        link = _Link()
        if "modelVersion" in charter:
            link.model_version = self.models.get(charter["modelVersion"])
            if link.model_version is None:
                raise EventInvalid(
                    {
                        f"{path}.facets.charter.modelVersion": [
                            f"unknown model version {charter['modelVersion']}"
                        ]
                    }
                )
        if "datasetVersion" in charter:
            link.dataset_version = self.by_id.get(charter["datasetVersion"])
            if link.dataset_version is None:
                raise EventInvalid(
                    {
                        f"{path}.facets.charter.datasetVersion": [
                            f"unknown dataset version {charter['datasetVersion']}"
                        ]
                    }
                )
            return link
        version = (_facet(facets, "version") or {}).get("datasetVersion")
        digest = charter.get("sha256") or (
            version.lower() if isinstance(version, str) and len(version) == 64 else None
        )
        if digest:
            for dv in self.versions:
                if dv.sha256 == digest:
                    link.dataset_version = dv
                    return link
        uris = set(_uri_candidates(ds["namespace"], ds["name"]))
        by_uri = [dv for dv in self.versions if dv.uri and dv.uri in uris]
        if version is not None:
            named = [dv for dv in by_uri if dv.version == version]
            if named:
                link.dataset_version = named[0]
                return link
        elif by_uri:
            before = [dv for dv in by_uri if dv.created_at <= ev.event_time]
            link.dataset_version = max(before or by_uri, key=lambda dv: (dv.created_at, dv.pk))
            return link
        if version is not None:
            for dv in self.versions:
                if dv.dataset_name == ds["name"] and dv.version == version:
                    link.dataset_version = dv
                    return link
        return link


# ---------------------------------------------------------------- registry nodes


def registry_spec(obj: Any) -> NodeSpec:
    """The node of a registry object (dataset version, model version, deployment, use case)."""
    from registry.models import Deployment

    if isinstance(obj, UseCase):
        return NodeSpec(
            key=node_key(NodeKind.USE_CASE, ref=obj.pk),
            kind=NodeKind.USE_CASE,
            object_id=obj.pk,
            label=obj.name,
            use_case_id=obj.pk,
            attrs={"status": obj.status, "risk_tier": obj.risk_tier},
        )
    if isinstance(obj, _DV):
        return NodeSpec(
            key=node_key(NodeKind.DATASET_VERSION, ref=obj.pk),
            kind=NodeKind.DATASET_VERSION,
            object_id=obj.pk,
            label=f"{obj.dataset_name}@{obj.version}",
            use_case_id=obj.use_case_id,
            attrs={"uri": obj.uri, "sha256": obj.sha256, "sensitivity": obj.sensitivity},
        )
    if isinstance(obj, DatasetVersion):
        return NodeSpec(
            key=node_key(NodeKind.DATASET_VERSION, ref=obj.pk),
            kind=NodeKind.DATASET_VERSION,
            object_id=obj.pk,
            label=f"{obj.dataset.name}@{obj.version}",
            use_case_id=obj.use_case_id,
            attrs={"uri": obj.uri, "sha256": obj.sha256, "sensitivity": obj.sensitivity},
        )
    if isinstance(obj, ModelVersion):
        return NodeSpec(
            key=node_key(NodeKind.MODEL_VERSION, ref=obj.pk),
            kind=NodeKind.MODEL_VERSION,
            object_id=obj.pk,
            label=f"{obj.model.name}@{obj.version}",
            use_case_id=obj.use_case_id,
            attrs={"status": obj.status},
        )
    if isinstance(obj, Deployment):
        return NodeSpec(
            key=node_key(NodeKind.DEPLOYMENT, ref=obj.pk),
            kind=NodeKind.DEPLOYMENT,
            object_id=obj.pk,
            label=str(obj),
            use_case_id=obj.use_case_id,
            attrs={
                "environment": obj.environment,
                "region": obj.region,
                "status": obj.status,
                "strategy": obj.strategy,
                "endpoint": obj.endpoint,
            },
        )
    raise TypeError(f"no lineage node for {type(obj).__name__}")


# ---------------------------------------------------------------- materialisation


class _Plan:
    """Nodes and edges a batch of events states, merged by key."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeSpec] = {}
        self.edges: dict[tuple[str, str, str], EdgeSpec] = {}

    def node(self, spec: NodeSpec) -> str:
        if spec.key in self.nodes:
            self.nodes[spec.key].merge(spec)
        else:
            self.nodes[spec.key] = spec
        return spec.key

    def edge(self, src: str, dst: str, kind: str, index: int, detail: Any = None) -> None:
        key = (src, dst, kind)
        if key in self.edges:
            if detail:
                self.edges[key].detail = _merge_columns(self.edges[key].detail, detail)
            return
        self.edges[key] = EdgeSpec(src, dst, kind, detail or {}, index)


def _merge_columns(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = {"fields": {**old.get("fields", {}), **new.get("fields", {})}}
    if new.get("dataset") or old.get("dataset"):
        merged["dataset"] = new.get("dataset") or old.get("dataset")
    return merged


def _ol_dataset(ds: dict[str, Any], use_case_id: int, linked: bool) -> NodeSpec:
    return NodeSpec(
        key=node_key(NodeKind.DATASET, namespace=ds["namespace"], name=ds["name"]),
        kind=NodeKind.DATASET,
        namespace=ds["namespace"],
        name=ds["name"],
        label=ds["name"],
        use_case_id=use_case_id,
        attrs=_dataset_attrs(ds),
        linked=linked,
    )


def _column_edges(plan: _Plan, ds: dict[str, Any], out_key: str, uc: int, index: int) -> None:
    facet = _facet(ds.get("facets"), "columnLineage")
    if facet is None:
        return
    per_source: dict[str, dict[str, Any]] = {}

    def source(item: dict[str, Any]) -> dict[str, Any]:
        key = plan.node(
            NodeSpec(
                key=node_key(NodeKind.DATASET, namespace=item["namespace"], name=item["name"]),
                kind=NodeKind.DATASET,
                namespace=item["namespace"],
                name=item["name"],
                label=item["name"],
                use_case_id=uc,
                linked=False,
            )
        )
        return per_source.setdefault(key, {"fields": {}})

    for column, mapping in (facet.get("fields") or {}).items():
        for item in mapping.get("inputFields") or []:
            entry = {"field": item["field"]}
            if item.get("transformations"):
                entry["transformations"] = item["transformations"]
            source(item)["fields"].setdefault(column, []).append(entry)
    for item in facet.get("dataset") or []:
        entry = {"field": item["field"]}
        if item.get("transformations"):
            entry["transformations"] = item["transformations"]
        source(item).setdefault("dataset", []).append(entry)
    for src_key, detail in per_source.items():
        plan.edge(src_key, out_key, EdgeKind.COLUMN, index, detail)


def _plan_dataset(
    plan: _Plan,
    linker: _Linker,
    ev: Checked,
    path: str,
    ds: dict[str, Any],
    uc: int,
    index: int,
) -> str:
    """The node a run or job connects to for this dataset (registry node when linked)."""
    link = linker.link(ev, path, ds)
    registry = link.model_version or link.dataset_version
    ol_key = plan.node(_ol_dataset(ds, uc, linked=registry is not None))
    if registry is None:
        return ol_key
    reg_key = plan.node(registry_spec(registry))
    plan.edge(ol_key, reg_key, EdgeKind.VERSION, index)
    return reg_key


def _plan_event(plan: _Plan, linker: _Linker, ev: Checked, uc: int, index: int) -> None:
    data = ev.data
    if ev.kind == "DatasetEvent":
        _plan_dataset(plan, linker, ev, "dataset", data["dataset"], uc, index)
        return
    job = data["job"]
    job_key = plan.node(
        NodeSpec(
            key=node_key(NodeKind.JOB, namespace=job["namespace"], name=job["name"]),
            kind=NodeKind.JOB,
            namespace=job["namespace"],
            name=job["name"],
            label=job["name"],
            use_case_id=uc,
            attrs=_job_attrs(job),
        )
    )
    holder = job_key
    if ev.kind == "RunEvent":
        run_key = plan.node(
            NodeSpec(
                key=node_key(NodeKind.RUN, ref=ev.run_id),
                kind=NodeKind.RUN,
                name=ev.run_id,
                label=f"{job['name']} run {ev.run_id[:8]}",
                use_case_id=uc,
                attrs=_run_attrs(ev),
                valid_from=ev.event_time if ev.event_type in ("START", "RUNNING") else None,
                valid_to=ev.event_time if ev.event_type in TERMINAL else None,
            )
        )
        plan.edge(job_key, run_key, EdgeKind.RUN_OF, index)
        parent = _facet((data["run"].get("facets") or {}), "parent")
        if parent is not None:
            pjob, prun = parent["job"], str(parent["run"]["runId"]).lower()
            pjob_key = plan.node(
                NodeSpec(
                    key=node_key(NodeKind.JOB, namespace=pjob["namespace"], name=pjob["name"]),
                    kind=NodeKind.JOB,
                    namespace=pjob["namespace"],
                    name=pjob["name"],
                    label=pjob["name"],
                    use_case_id=uc,
                )
            )
            prun_key = plan.node(
                NodeSpec(
                    key=node_key(NodeKind.RUN, ref=prun),
                    kind=NodeKind.RUN,
                    name=prun,
                    label=f"{pjob['name']} run {prun[:8]}",
                    use_case_id=uc,
                )
            )
            plan.edge(pjob_key, prun_key, EdgeKind.RUN_OF, index)
            plan.edge(prun_key, run_key, EdgeKind.PARENT, index)
        holder = run_key
    for i, ds in enumerate(data.get("inputs") or []):
        key = _plan_dataset(plan, linker, ev, f"inputs[{i}]", ds, uc, index)
        plan.edge(key, holder, EdgeKind.INPUT, index)
    for i, ds in enumerate(data.get("outputs") or []):
        key = _plan_dataset(plan, linker, ev, f"outputs[{i}]", ds, uc, index)
        plan.edge(holder, key, EdgeKind.OUTPUT, index)
        out_key = node_key(NodeKind.DATASET, namespace=ds["namespace"], name=ds["name"])
        _column_edges(plan, ds, out_key, uc, index)


# ---------------------------------------------------------------- SQL


# Statement templates: ``{values}`` is filled with placeholders only (``_values``).
_INSERT_NODES = (
    "INSERT INTO lineage_lineagenode (kind, key, key_hash, namespace, name, object_id, label, "
    "use_case_id, linked, attrs, valid_from, valid_to, created_at, updated_at) VALUES {values} "
    "ON CONFLICT (key_hash) DO NOTHING RETURNING key_hash, id"
)
_INSERT_EDGES = (
    "INSERT INTO lineage_lineageedge (src_id, dst_id, kind, detail, source, event_id, "
    "created_at) VALUES {values} ON CONFLICT (src_id, dst_id, kind) WHERE removed_at IS NULL "
    "{conflict}"
)
_INSERT_EVENTS = (
    "INSERT INTO lineage_lineageevent (sha256, kind, event_type, event_time, run_id, "
    "job_namespace, job_name, producer, schema_url, payload, use_case_id, received_by_id, "
    "token_id, received_at) VALUES {values} ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id"
)


def _values(rows: int, width: int, casts: dict[int, str] | None = None) -> str:
    casts = casts or {}
    one = "(" + ", ".join(f"%s{casts.get(i, '')}" for i in range(width)) + ")"
    return ", ".join([one] * rows)


def _chunks[T](items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _insert_events(rows: list[LineageEvent]) -> tuple[dict[str, int], dict[str, int]]:
    """Insert events not stored yet: (new sha256 → id, already stored sha256 → id)."""
    new_ids: dict[str, int] = {}
    old_ids: dict[str, int] = {}
    if connection.vendor != "postgresql":  # SQLite: writers are serialised anyway
        for row in rows:
            existing = LineageEvent.objects.filter(sha256=row.sha256).values_list("id", flat=True)
            if existing:
                old_ids[row.sha256] = existing[0]
            else:
                row.save()
                new_ids[row.sha256] = row.pk
        return new_ids, old_ids
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, 500):
            params: list[Any] = []
            for r in chunk:
                params += [
                    r.sha256, r.kind, r.event_type, r.event_time, r.run_id, r.job_namespace,
                    r.job_name, r.producer, r.schema_url, json.dumps(r.payload), r.use_case_id,
                    r.received_by_id, r.token_id, r.received_at,
                ]  # fmt: skip
            values = _values(len(chunk), 14, {9: "::jsonb"})
            cursor.execute(_INSERT_EVENTS.format(values=values), params)
            new_ids.update(dict(cursor.fetchall()))
        known = [r.sha256 for r in rows if r.sha256 not in new_ids]
        if known:
            cursor.execute(
                "SELECT sha256, id FROM lineage_lineageevent WHERE sha256 = ANY(%s)", [known]
            )
            old_ids = dict(cursor.fetchall())
    return new_ids, old_ids


def _save_nodes_orm(specs: list[NodeSpec]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for s in specs:
        node = LineageNode.objects.filter(key_hash=key_digest(s.key)).first()
        if node is None:
            node = LineageNode.objects.create(
                kind=s.kind, key=s.key, key_hash=key_digest(s.key), namespace=s.namespace,
                name=s.name, object_id=s.object_id, label=s.label[:1000],
                use_case_id=s.use_case_id, linked=s.linked, attrs=s.attrs,
                valid_from=s.valid_from, valid_to=s.valid_to,
            )  # fmt: skip
        else:
            before = (dict(node.attrs), node.linked, node.valid_from, node.valid_to)
            node.attrs = {**node.attrs, **s.attrs}
            node.linked = True if (node.linked or s.linked) else (
                node.linked if node.linked is not None else s.linked
            )  # fmt: skip
            node.valid_from = _min(node.valid_from, s.valid_from)
            node.valid_to = _max(node.valid_to, s.valid_to)
            if (node.attrs, node.linked, node.valid_from, node.valid_to) != before:
                node.save()
        ids[s.key] = node.pk
    return ids


def save_nodes(specs: Iterable[NodeSpec], now: datetime) -> dict[str, int]:
    """Insert missing nodes, merge attributes into existing ones; returns key → node id."""
    specs = sorted(specs, key=lambda s: key_digest(s.key))
    if not specs:
        return {}
    if connection.vendor != "postgresql":
        return _save_nodes_orm(specs)
    digests = {key_digest(s.key): s for s in specs}
    ids: dict[str, int] = {}
    existing: dict[str, tuple[Any, ...]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key_hash, id, attrs, linked, valid_from, valid_to FROM lineage_lineagenode "
            "WHERE key_hash = ANY(%s)",
            [list(digests)],
        )
        for row in cursor.fetchall():
            existing[row[0]] = row[1:]
        missing = [d for d in digests if d not in existing]
        for chunk in _chunks(missing, 500):
            params: list[Any] = []
            for d in chunk:
                s = digests[d]
                params += [
                    s.kind, s.key, d, s.namespace, s.name, s.object_id, s.label[:1000],
                    s.use_case_id, s.linked, json.dumps(s.attrs), s.valid_from, s.valid_to,
                    now, now,
                ]  # fmt: skip
            values = _values(len(chunk), 14, {9: "::jsonb"})
            cursor.execute(_INSERT_NODES.format(values=values), params)
            for digest, pk in cursor.fetchall():
                ids[digests[digest].key] = pk
        raced = [d for d in missing if digests[d].key not in ids]
        if raced:  # inserted by a concurrent request meanwhile: merge into theirs
            cursor.execute(
                "SELECT key_hash, id, attrs, linked, valid_from, valid_to "
                "FROM lineage_lineagenode WHERE key_hash = ANY(%s)",
                [raced],
            )
            for row in cursor.fetchall():
                existing[row[0]] = row[1:]
        updates = []
        for digest, (pk, attrs, linked, valid_from, valid_to) in existing.items():
            s = digests[digest]
            ids[s.key] = pk
            if isinstance(attrs, str):  # Django's psycopg loader leaves jsonb as text
                attrs = json.loads(attrs)
            new_attrs = {**(attrs or {}), **s.attrs}
            new_linked = True if (linked or s.linked) else (linked if linked is not None
                                                             else s.linked)  # fmt: skip
            new_from = _min(valid_from, s.valid_from)
            new_to = _max(valid_to, s.valid_to)
            if (new_attrs, new_linked, new_from, new_to) != (attrs, linked, valid_from, valid_to):
                updates.append((pk, new_attrs, new_linked, new_from, new_to))
        for pk, attrs, linked, valid_from, valid_to in sorted(updates, key=lambda u: u[0]):
            cursor.execute(
                "UPDATE lineage_lineagenode SET attrs = %s::jsonb, linked = %s, valid_from = %s, "
                "valid_to = %s, updated_at = %s WHERE id = %s",
                [json.dumps(attrs), linked, valid_from, valid_to, now, pk],
            )
    return ids


def save_edges(
    edges: Iterable[tuple[int, int, str, dict[str, Any], int | None]], source: str, now: datetime
) -> None:
    """Insert live edges that do not exist yet; column edges take the newest detail."""
    rows = sorted(edges, key=lambda e: (e[0], e[1], e[2]))
    if connection.vendor != "postgresql":
        for src, dst, kind, detail, event_id in rows:
            edge = LineageEdge.objects.filter(src_id=src, dst_id=dst, kind=kind, removed_at=None)
            if not edge.exists():
                LineageEdge.objects.create(
                    src_id=src, dst_id=dst, kind=kind, detail=detail, source=source,
                    event_id=event_id,
                )  # fmt: skip
            elif kind == EdgeKind.COLUMN:
                edge.exclude(detail=detail).update(detail=detail)
        return
    plain = [e for e in rows if e[2] != EdgeKind.COLUMN]
    column = [e for e in rows if e[2] == EdgeKind.COLUMN]
    with connection.cursor() as cursor:
        for batch, conflict in (
            (plain, "DO NOTHING"),
            (
                column,
                "DO UPDATE SET detail = EXCLUDED.detail "
                "WHERE lineage_lineageedge.detail IS DISTINCT FROM EXCLUDED.detail",
            ),
        ):
            for chunk in _chunks(batch, 1000):
                params: list[Any] = []
                for src, dst, kind, detail, event_id in chunk:
                    params += [src, dst, kind, json.dumps(detail), source, event_id, now]
                values = _values(len(chunk), 7, {3: "::jsonb"})
                cursor.execute(_INSERT_EDGES.format(values=values, conflict=conflict), params)


# ---------------------------------------------------------------- intake


@dataclass
class Stored:
    id: int
    sha256: str
    stored: bool
    use_case_id: int


def validate_all(items: list[Any], *, is_batch: bool) -> list[Checked]:
    """Check every event; a batch's errors are prefixed with the event's index."""
    checked: list[Checked] = []
    errors: dict[str, list[str]] = {}
    for i, item in enumerate(items):
        try:
            checked.append(check_event(item))
        except EventInvalid as exc:
            if not is_batch:
                raise
            errors.update(_indexed(i, exc.errors))
    if errors:
        raise EventInvalid(errors)
    return checked


def _indexed(i: int, errors: dict[str, list[str]]) -> dict[str, list[str]]:
    return {(f"[{i}]" if k == "non_field_errors" else f"[{i}].{k}"): v for k, v in errors.items()}


def ingest(access: Access, items: list[Any], *, is_batch: bool = False) -> list[Stored]:
    """Store and materialise events in one transaction; see the module docstring.

    Raises :class:`EventInvalid` (400) naming the field of the first invalid
    event(s), or ``PermissionDenied`` (403) when the caller may not write to an
    event's use case. Nothing is written then.
    """
    if len(items) > MAX_BATCH:
        raise EventInvalid({"non_field_errors": [f"at most {MAX_BATCH} events per batch"]})
    if not items:
        raise EventInvalid({"non_field_errors": ["no events"]})
    checked = validate_all(items, is_batch=is_batch)
    use_cases = _UseCases(access)
    owners: list[UseCase] = []
    for i, ev in enumerate(checked):
        try:
            owners.append(use_cases.resolve(ev))
        except EventInvalid as exc:
            if not is_batch:
                raise
            raise EventInvalid(_indexed(i, exc.errors)) from None
        except IngestRefused as exc:
            raise PermissionDenied(str(exc)) from None
    digests = [canonical_sha256(ev.data) for ev in checked]
    return _store(access, checked, owners, digests, is_batch, use_cases.visible())


@transaction.atomic
def _store(
    access: Access,
    checked: list[Checked],
    owners: list[UseCase],
    digests: list[str],
    is_batch: bool,
    seen: list[int] | None,
) -> list[Stored]:
    now = timezone.now()
    actor = access.actor if access.actor is not None and access.actor.is_authenticated else None
    token_id = access.token.pk if access.token is not None else None
    order = sorted(range(len(checked)), key=lambda i: digests[i])
    first: dict[str, int] = {}
    for i in order:
        first.setdefault(digests[i], i)
    fresh = sorted(first.values(), key=lambda i: digests[i])
    rows = []
    for i in fresh:
        ev = checked[i]
        job = ev.data.get("job") or {}
        rows.append(
            LineageEvent(
                sha256=digests[i], kind=ev.kind, event_type=ev.event_type,
                event_time=ev.event_time, run_id=ev.run_id or None,
                job_namespace=job.get("namespace", ""), job_name=job.get("name", ""),
                producer=ev.data["producer"], schema_url=ev.data["schemaURL"], payload=ev.data,
                use_case_id=owners[i].pk, received_by_id=actor.pk if actor is not None else None,
                token_id=token_id, received_at=now,
            )
        )  # fmt: skip
    new_ids, old_ids = _insert_events(rows)
    stored_idx = [first[d] for d in sorted(new_ids)]
    if stored_idx:
        plan = _Plan()
        linker = _Linker(access, [checked[i] for i in stored_idx], seen)
        for i in stored_idx:
            try:
                _plan_event(plan, linker, checked[i], owners[i].pk, i)
            except EventInvalid as exc:
                if not is_batch:
                    raise
                raise EventInvalid(_indexed(i, exc.errors)) from None
        ids = save_nodes(plan.nodes.values(), now)
        save_edges(
            (
                (ids[e.src], ids[e.dst], e.kind, e.detail, new_ids[digests[e.event_index]])
                for e in plan.edges.values()
            ),
            "openlineage",
            now,
        )
        # The audit chain's lock is taken last, with the commit (``deferred``): it is held
        # only while the transaction's last statements run on the server.
        for i in stored_idx:
            ev = checked[i]
            _audit(actor, new_ids[digests[i]], digests[i], ev, owners[i])
    results = []
    for i in range(len(checked)):
        d = digests[i]
        is_new = d in new_ids and first[d] == i
        results.append(Stored(new_ids.get(d) or old_ids[d], d, is_new, owners[i].pk))
    return results


def _audit(actor: Any, event_id: int, digest: str, ev: Checked, use_case: UseCase) -> None:
    data = ev.data
    job = data.get("job") or {}
    changes: dict[str, Any] = {
        "sha256": digest,
        "kind": ev.kind,
        "event_type": ev.event_type,
        "event_time": data["eventTime"],
        "use_case": use_case.pk,
    }
    if job:
        changes["job"] = f"{job['namespace']}:{job['name']}"
    if ev.run_id:
        changes["run_id"] = ev.run_id
    if ev.kind == "DatasetEvent":
        changes["dataset"] = f"{data['dataset']['namespace']}:{data['dataset']['name']}"
    else:
        changes["inputs"] = len(data.get("inputs") or [])
        changes["outputs"] = len(data.get("outputs") or [])
    record(
        AUDIT_ACTION,
        actor=actor,
        object_type="lineage.lineageevent",
        object_id=str(event_id),
        object_repr=(f"{ev.event_type or ev.kind} {changes.get('job', changes.get('dataset'))}")[
            :300
        ],
        changes=changes,
        deferred=True,  # sent with the COMMIT: the chain head is held only to the commit
    )


__all__ = [
    "AUDIT_ACTION",
    "EventInvalid",
    "LineageEvent",
    "Stored",
    "canonical_sha256",
    "ingest",
    "registry_spec",
    "save_edges",
    "save_nodes",
]
