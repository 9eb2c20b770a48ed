"""Validation of OpenLineage 2-0-2 events (RunEvent, DatasetEvent, JobEvent).

The rules follow the 2-0-2 JSON schema (``BaseEvent``: ``eventTime`` RFC 3339
date-time, ``producer`` and ``schemaURL`` URIs; ``Run.runId`` a UUID; jobs and
datasets need ``namespace`` and ``name``; every facet is an object with
``_producer`` and ``_schemaURL``), plus the shape of the facets Charter reads
(``schema``, ``dataSource``, ``columnLineage``, ``version``, ``parent`` and
Charter's own ``charter`` facet). Facets Charter does not know are kept as they
are. Errors name the field by its JSON path, e.g. ``run.runId`` or
``inputs[0].facets.schema.fields[2].name``.

The event types and ``eventType`` values are taken from the installed
openlineage-python package's generated 2-0-2 models, so they follow the spec
the client speaks.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openlineage.client.generated import base as ol

EVENT_TYPES = tuple(e.value for e in ol.EventType)
EVENT_KINDS = tuple(cls.__name__ for cls in (ol.RunEvent, ol.DatasetEvent, ol.JobEvent))

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SCHEMA_FRAGMENT = re.compile(r"#/(?:\$defs|definitions)/(RunEvent|DatasetEvent|JobEvent)$")


class EventInvalid(Exception):
    """Field-named problems with one event (or a batch): ``errors`` maps path → messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))


@dataclass
class Checked:
    """A valid event and what Charter reads from it."""

    data: dict[str, Any]
    kind: str  # RunEvent | DatasetEvent | JobEvent
    event_time: datetime
    event_type: str = ""
    run_id: str = ""


@dataclass
class _Errors:
    items: dict[str, list[str]] = field(default_factory=dict)

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path or "non_field_errors", []).append(message)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 date-time with its offset, or None."""
    if not _RFC3339.match(value):
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


class _Validator:
    def __init__(self) -> None:
        self.errors = _Errors()

    # -- primitives -------------------------------------------------------
    def obj(self, value: Any, path: str) -> bool:
        if not isinstance(value, dict):
            self.errors.add(path, f"must be a JSON object, not {_type_name(value)}")
            return False
        return True

    def string(
        self, data: dict[str, Any], key: str, path: str, *, required: bool, nonempty: bool = False
    ) -> str | None:
        where = _join(path, key)
        if key not in data or data[key] is None:
            if required:
                self.errors.add(where, "is required")
            return None
        value = data[key]
        if not isinstance(value, str):
            self.errors.add(where, f"must be a string, not {_type_name(value)}")
            return None
        if nonempty and not value.strip():
            self.errors.add(where, "must not be empty")
            return None
        return value

    def uri(self, data: dict[str, Any], key: str, path: str, *, required: bool) -> str | None:
        value = self.string(data, key, path, required=required, nonempty=required)
        if value is not None and not _URI.match(value):
            self.errors.add(_join(path, key), f"must be an absolute URI, not {value[:100]!r}")
            return None
        return value

    def time(self, data: dict[str, Any], key: str, path: str, *, required: bool) -> datetime | None:
        value = self.string(data, key, path, required=required)
        if value is None:
            return None
        parsed = parse_time(value)
        if parsed is None:
            self.errors.add(
                _join(path, key),
                f"must be an RFC 3339 date-time with a time zone offset, not {value[:60]!r}",
            )
        return parsed

    def uuid(self, data: dict[str, Any], key: str, path: str) -> str | None:
        value = self.string(data, key, path, required=True)
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            self.errors.add(_join(path, key), f"must be a UUID, not {value[:60]!r}")
            return None

    def array(self, data: dict[str, Any], key: str, path: str) -> list[Any]:
        if key not in data or data[key] is None:
            return []
        value = data[key]
        if not isinstance(value, list):
            self.errors.add(_join(path, key), f"must be an array, not {_type_name(value)}")
            return []
        return value

    # -- structures -------------------------------------------------------
    def facets(self, data: dict[str, Any], key: str, path: str, *, deletable: bool) -> None:
        if key not in data or data[key] is None:
            return
        facets = data[key]
        where = _join(path, key)
        if not self.obj(facets, where):
            return
        for name, facet in facets.items():
            fpath = _join(where, name)
            if not self.obj(facet, fpath):
                continue
            self.uri(facet, "_producer", fpath, required=True)
            self.uri(facet, "_schemaURL", fpath, required=True)
            if deletable and "_deleted" in facet and not isinstance(facet["_deleted"], bool):
                self.errors.add(_join(fpath, "_deleted"), "must be true or false")
            if facet.get("_deleted") is True:
                continue
            check = KNOWN_FACETS.get(name)
            if check is not None:
                check(self, facet, fpath)

    def job(self, data: dict[str, Any], path: str) -> None:
        if not self.obj(data, path):
            return
        self.string(data, "namespace", path, required=True, nonempty=True)
        self.string(data, "name", path, required=True, nonempty=True)
        self.facets(data, "facets", path, deletable=True)

    def dataset(self, data: Any, path: str, extra: str | None = None) -> None:
        if not self.obj(data, path):
            return
        self.string(data, "namespace", path, required=True, nonempty=True)
        self.string(data, "name", path, required=True, nonempty=True)
        self.facets(data, "facets", path, deletable=True)
        if extra:
            self.facets(data, extra, path, deletable=False)

    def run(self, data: Any, path: str) -> str | None:
        if not self.obj(data, path):
            return None
        run_id = self.uuid(data, "runId", path)
        self.facets(data, "facets", path, deletable=False)
        return run_id

    def datasets(self, data: dict[str, Any]) -> None:
        for i, item in enumerate(self.array(data, "inputs", "")):
            self.dataset(item, _join("inputs", i), "inputFacets")
        for i, item in enumerate(self.array(data, "outputs", "")):
            self.dataset(item, _join("outputs", i), "outputFacets")


# -- the facets Charter reads ---------------------------------------------


def _schema_fields(v: _Validator, facet: dict[str, Any], path: str) -> None:
    for i, column in enumerate(v.array(facet, "fields", path)):
        cpath = _join(_join(path, "fields"), i)
        if v.obj(column, cpath):
            v.string(column, "name", cpath, required=True)
            v.string(column, "type", cpath, required=False)
            v.string(column, "description", cpath, required=False)
            _schema_fields(v, column, cpath)


def _data_source(v: _Validator, facet: dict[str, Any], path: str) -> None:
    v.string(facet, "name", path, required=False)
    v.uri(facet, "uri", path, required=False)


def _input_field(v: _Validator, item: Any, path: str) -> None:
    if not v.obj(item, path):
        return
    for key in ("namespace", "name", "field"):
        v.string(item, key, path, required=True, nonempty=True)
    for j, t in enumerate(v.array(item, "transformations", path)):
        tpath = _join(_join(path, "transformations"), j)
        if v.obj(t, tpath):
            v.string(t, "type", tpath, required=True)


def _column_lineage(v: _Validator, facet: dict[str, Any], path: str) -> None:
    fields = facet.get("fields")
    fpath = _join(path, "fields")
    if fields is None:
        v.errors.add(fpath, "is required")
        return
    if not v.obj(fields, fpath):
        return
    for column, mapping in fields.items():
        cpath = _join(fpath, column)
        if not v.obj(mapping, cpath):
            continue
        if "inputFields" not in mapping:
            v.errors.add(_join(cpath, "inputFields"), "is required")
        for i, item in enumerate(v.array(mapping, "inputFields", cpath)):
            _input_field(v, item, _join(_join(cpath, "inputFields"), i))
    for i, item in enumerate(v.array(facet, "dataset", path)):
        _input_field(v, item, _join(_join(path, "dataset"), i))


def _version(v: _Validator, facet: dict[str, Any], path: str) -> None:
    v.string(facet, "datasetVersion", path, required=True, nonempty=True)


def _parent(v: _Validator, facet: dict[str, Any], path: str) -> None:
    run = facet.get("run")
    rpath = _join(path, "run")
    if run is None:
        v.errors.add(rpath, "is required")
    elif v.obj(run, rpath):
        v.uuid(run, "runId", rpath)
    job = facet.get("job")
    jpath = _join(path, "job")
    if job is None:
        v.errors.add(jpath, "is required")
    elif v.obj(job, jpath):
        v.string(job, "namespace", jpath, required=True, nonempty=True)
        v.string(job, "name", jpath, required=True, nonempty=True)


def _charter(v: _Validator, facet: dict[str, Any], path: str) -> None:
    """Charter's facet: ``useCase`` (id or name), ``datasetVersion`` / ``modelVersion``
    (registry ids) and ``sha256`` (a dataset version's content digest)."""
    if "useCase" in facet:
        value = facet["useCase"]
        ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
            isinstance(value, str) and value.strip()
        )
        if not ok:
            v.errors.add(_join(path, "useCase"), "must be a use case id or name")
    for key in ("datasetVersion", "modelVersion"):
        if key in facet:
            value = facet[key]
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                v.errors.add(_join(path, key), "must be a positive integer (a registry id)")
    if "sha256" in facet:
        value = facet["sha256"]
        if not (isinstance(value, str) and _SHA256.match(value)):
            v.errors.add(_join(path, "sha256"), "must be 64 lowercase hex characters")


KNOWN_FACETS = {
    "schema": _schema_fields,
    "dataSource": _data_source,
    "columnLineage": _column_lineage,
    "version": _version,
    "parent": _parent,
    "charter": _charter,
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def event_kind(data: dict[str, Any]) -> tuple[str | None, str]:
    """(kind, problem): the event type named by ``schemaURL``, else told by its shape."""
    url = data.get("schemaURL")
    if isinstance(url, str):
        match = _SCHEMA_FRAGMENT.search(url)
        if match:
            return match.group(1), ""
    if "run" in data:
        return "RunEvent", ""
    if "dataset" in data:
        return "DatasetEvent", ""
    if "job" in data:
        return "JobEvent", ""
    return None, (
        "not an OpenLineage event: a RunEvent has 'run' and 'job', a DatasetEvent "
        "'dataset', a JobEvent 'job'"
    )


def check_event(data: Any) -> Checked:
    """Validate one event; raise :class:`EventInvalid` naming every problem found."""
    v = _Validator()
    if not isinstance(data, dict):
        raise EventInvalid(
            {"non_field_errors": [f"an event must be a JSON object, not {_type_name(data)}"]}
        )
    when = v.time(data, "eventTime", "", required=True)
    v.uri(data, "producer", "", required=True)
    v.uri(data, "schemaURL", "", required=True)
    kind, problem = event_kind(data)
    if kind is None:
        v.errors.add("non_field_errors", problem)
        raise EventInvalid(v.errors.items)
    event_type = ""
    run_id = None
    if kind == "RunEvent":
        for key in ("run", "job"):
            if key not in data:
                v.errors.add(key, "is required (RunEvent)")
        if "eventType" in data and data["eventType"] is not None:
            value = data["eventType"]
            if value not in EVENT_TYPES:
                v.errors.add(
                    "eventType", f"must be one of {', '.join(EVENT_TYPES)}, not {str(value)[:40]!r}"
                )
            else:
                event_type = value
        if "run" in data:
            run_id = v.run(data["run"], "run")
        if "job" in data:
            v.job(data["job"], "job")
        v.datasets(data)
    elif kind == "DatasetEvent":
        if "dataset" not in data:
            v.errors.add("dataset", "is required (DatasetEvent)")
        else:
            v.dataset(data["dataset"], "dataset")
    else:
        if "job" not in data:
            v.errors.add("job", "is required (JobEvent)")
        else:
            v.job(data["job"], "job")
        v.datasets(data)
    if v.errors.items:
        raise EventInvalid(v.errors.items)
    assert when is not None
    return Checked(
        data=data, kind=kind, event_time=when, event_type=event_type, run_id=run_id or ""
    )
