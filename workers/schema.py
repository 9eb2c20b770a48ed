"""Checks of telemetry against a deployment's reference profile, before anything is stored.

Each function raises :class:`TelemetryRejected` with ``{field: [messages]}`` naming every
problem it found (the API answers 400, or 413 for ``too_large``), or returns the cleaned
columns. Numbers are checked with numpy over whole columns, so a 50,000-row batch costs
milliseconds, not a Python loop per value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.drift import CATEGORICAL, NUMERIC, DatasetProfile, FeatureProfile, ServiceMetrics

MAX_LISTED = 5  # offending positions named per column
MAX_ID_LENGTH = 200

ROW_KEYS = {
    "idempotency_key",
    "features",
    "predictions",
    "prediction_ids",
    "latency_ms",
    "errors",
    "timestamp",
}
PROFILE_KEYS = {"idempotency_key", "profile", "predictions", "service", "timestamp"}
LABEL_KEYS = {"idempotency_key", "prediction_ids", "labels", "timestamp"}
#: Reserved column names of uploaded files (everything else must be a reference feature).
FILE_COLUMNS = {"prediction": "predictions", "prediction_id": "prediction_ids", "latency_ms": None}


class TelemetryRejected(Exception):
    """Bad telemetry: ``errors`` maps a field path to messages; ``too_large`` means 413."""

    def __init__(self, errors: dict[str, list[str]], *, too_large: bool = False) -> None:
        self.errors = errors
        self.too_large = too_large
        first = next(iter(errors.items()), ("", [""]))
        super().__init__(f"{first[0]}: {first[1][0]}")


@dataclass
class Schema:
    """What a deployment's telemetry must look like (from its reference profile)."""

    features: dict[str, str]  # name -> numeric | categorical
    category_types: dict[str, type] = field(default_factory=dict)
    prediction_kind: str | None = None  # None: not fixed by the reference (any one kind)

    @classmethod
    def from_reference(
        cls, profile: DatasetProfile, names: list[str], prediction_column: str = ""
    ) -> Schema:
        features = {n: profile[n].kind for n in names}
        cat_types = {n: _category_type(profile[n]) for n in names if features[n] == CATEGORICAL}
        kind = profile[prediction_column].kind if prediction_column else None
        return cls(features, cat_types, kind)


def _category_type(fp: FeatureProfile) -> type:
    """The Python type of a categorical feature's values (str unless the reference says)."""
    for key in fp.values:
        return bool if isinstance(key, bool) else type(key)
    return str


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Errors:
    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.items:
            raise TelemetryRejected(self.items)


def _positions(mask: np.ndarray) -> str:
    where = np.flatnonzero(mask)
    shown = ", ".join(str(int(i)) for i in where[:MAX_LISTED])
    more = f" and {where.size - MAX_LISTED} more" if where.size > MAX_LISTED else ""
    return f"at row {shown}{more}" if where.size == 1 else f"at rows {shown}{more}"


def check_numeric_list(values: list[Any], path: str, errors: _Errors, *, nulls: bool) -> bool:
    """Numbers (not booleans), finite; ``None`` only when ``nulls``. True when clean."""
    types = set(map(type, values))
    allowed = {int, float, type(None)} if nulls else {int, float}
    bad_types = types - allowed
    if bad_types:
        allowed_types = tuple(allowed)
        mask = np.fromiter(
            (type(v) not in allowed_types for v in values), dtype=bool, count=len(values)
        )
        first = values[int(np.flatnonzero(mask)[0])]
        what = "numbers or null" if nulls else "numbers"
        errors.add(
            path,
            f"wrong type: expected {what}, got {type(first).__name__} {_describe(first)} "
            f"{_positions(mask)}",
        )
        return False
    if float in types or int in types:
        try:
            arr = np.array(values, dtype=np.float64)  # None -> NaN
        except OverflowError:
            errors.add(path, "a number is too large to represent")
            return False
        non_finite = ~np.isfinite(arr)
        if type(None) in types:
            non_finite &= np.fromiter((v is not None for v in values), bool, len(values))
        if non_finite.any():
            errors.add(
                path,
                "NaN or infinite value "
                f"{_positions(non_finite)} (send null for a missing value; infinities are "
                "not accepted)",
            )
            return False
    return True


def _check_categorical(values: list[Any], path: str, want: type, errors: _Errors) -> bool:
    allowed = {want, type(None)}
    types = set(map(type, values))
    if types - allowed:
        mask = np.fromiter((type(v) not in allowed for v in values), bool, len(values))
        first = values[int(np.flatnonzero(mask)[0])]
        if isinstance(first, float) and not math.isfinite(first):
            errors.add(path, f"NaN or infinite value {_positions(mask)} (send null)")
        else:
            errors.add(
                path,
                f"wrong type: expected {want.__name__} or null (a categorical feature), got "
                f"{type(first).__name__} {_describe(first)} {_positions(mask)}",
            )
        return False
    return True


def _check_ids(values: Any, path: str, rows: int, errors: _Errors) -> list[str] | None:
    if not isinstance(values, list):
        errors.add(path, "expected a list of strings")
        return None
    if len(values) != rows:
        errors.add(path, f"has {len(values)} entries, expected {rows} (one per row)")
        return None
    bad = [i for i, v in enumerate(values) if not isinstance(v, str | int) or isinstance(v, bool)]
    if bad:
        errors.add(path, f"wrong type at rows {bad[:MAX_LISTED]}: expected strings")
        return None
    ids = [str(v) for v in values]
    long = [i for i, v in enumerate(ids) if not v or len(v) > MAX_ID_LENGTH]
    if long:
        errors.add(path, f"ids must be 1 to {MAX_ID_LENGTH} characters (rows {long[:MAX_LISTED]})")
        return None
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = [v for v in ids if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
        errors.add(path, f"duplicate ids in the batch: {sorted(set(dups))[:MAX_LISTED]}")
        return None
    return ids


def _prediction_kind(values: list[Any]) -> str | None:
    types = set(map(type, values)) - {type(None)}
    if not types:
        return None
    if types <= {int, float}:
        return NUMERIC
    return CATEGORICAL


def check_predictions(values: Any, rows: int, schema: Schema, errors: _Errors) -> None:
    path = "predictions"
    if not isinstance(values, list):
        errors.add(path, "expected a list (one prediction per row)")
        return
    if len(values) != rows:
        errors.add(path, f"has {len(values)} entries, expected {rows} (one per row)")
        return
    kind = schema.prediction_kind or _prediction_kind(values)
    if kind == NUMERIC:
        check_numeric_list(values, path, errors, nulls=True)
    elif kind == CATEGORICAL:
        types = set(map(type, values)) - {type(None)}
        if not (types <= {str} or types <= {bool} or types <= {int}):
            errors.add(
                path,
                "wrong type: predictions must all be numbers, all strings or all booleans "
                f"(got {sorted(t.__name__ for t in types)})",
            )


def check_rows(data: Any, schema: Schema, max_rows: int) -> dict[str, Any]:
    """A columnar JSON batch: ``features`` (exactly the reference's inputs), optional
    ``predictions``, ``prediction_ids``, ``latency_ms`` (one per row) and ``errors``
    (how many of the rows' requests failed)."""
    errors = _Errors()
    if not isinstance(data, Mapping):
        raise TelemetryRejected({"body": ["expected a JSON object"]})
    for key in sorted(set(data) - ROW_KEYS):
        errors.add(key, f"unknown field (expected some of {sorted(ROW_KEYS)})")
    features = data.get("features")
    if not isinstance(features, Mapping) or not features:
        errors.add("features", "required: an object of feature name -> list of values")
        errors.raise_if_any()
    for name in sorted(set(features) - set(schema.features)):
        errors.add(f"features.{name}", "unknown feature (not in the reference profile)")
    for name in sorted(set(schema.features) - set(features)):
        errors.add(f"features.{name}", "missing feature (the reference profile has it)")
    lengths = {}
    for name, values in features.items():
        if name in schema.features and not isinstance(values, list):
            errors.add(f"features.{name}", "expected a list of values")
        elif isinstance(values, list):
            lengths[name] = len(values)
    errors.raise_if_any()
    rows = max(lengths.values())
    if rows > max_rows:
        raise TelemetryRejected(
            {"features": [f"{rows} rows; the limit is {max_rows} per batch (upload a file)"]},
            too_large=True,
        )
    if rows == 0:
        errors.add("features", "the batch has no rows")
    for name, n in lengths.items():
        if n != rows:
            errors.add(f"features.{name}", f"has {n} values, expected {rows} (the longest column)")
    errors.raise_if_any()
    for name, kind in schema.features.items():
        path = f"features.{name}"
        if kind == NUMERIC:
            check_numeric_list(features[name], path, errors, nulls=True)
        else:
            _check_categorical(features[name], path, schema.category_types[name], errors)
    if data.get("predictions") is not None:
        check_predictions(data["predictions"], rows, schema, errors)
    ids = None
    if data.get("prediction_ids") is not None:
        ids = _check_ids(data["prediction_ids"], "prediction_ids", rows, errors)
        if ids is not None and data.get("predictions") is None:
            errors.add("prediction_ids", "given without predictions")
    latency = data.get("latency_ms")
    if latency is not None:
        if not isinstance(latency, list) or len(latency) != rows:
            errors.add("latency_ms", f"expected a list of {rows} numbers (one per row)")
        elif check_numeric_list(latency, "latency_ms", errors, nulls=False) and any(
            v < 0 for v in latency
        ):
            errors.add("latency_ms", "latencies must not be negative")
    n_errors = data.get("errors", 0)
    if isinstance(n_errors, bool) or not isinstance(n_errors, int) or n_errors < 0:
        errors.add("errors", f"expected a non-negative integer, got {_describe(n_errors)}")
    elif n_errors > rows:
        errors.add("errors", f"{n_errors} errors in a batch of {rows} requests")
    elif n_errors and latency is None:
        errors.add("errors", "counts failed requests among the rows: send latency_ms with it")
    errors.raise_if_any()
    return {
        "features": {name: features[name] for name in schema.features},
        "predictions": data.get("predictions"),
        "prediction_ids": ids,
        "latency_ms": latency,
        "errors": n_errors or 0,
        "rows": rows,
    }


def check_columns(columns: dict[str, np.ndarray], schema: Schema, max_rows: int) -> dict[str, Any]:
    """An uploaded file's columns (from ``workers.drift.read_*_columns``), same rules."""
    errors = _Errors()
    known = set(schema.features) | set(FILE_COLUMNS)
    for name in sorted(set(columns) - known):
        errors.add(f"features.{name}", "unknown feature (not in the reference profile)")
    for name in sorted(set(schema.features) - set(columns)):
        errors.add(f"features.{name}", "missing feature (the reference profile has it)")
    errors.raise_if_any()
    rows = len(next(iter(columns.values())))
    if rows > max_rows:
        raise TelemetryRejected(
            {"file": [f"{rows} rows; the limit is {max_rows} per upload"]}, too_large=True
        )
    if rows == 0:
        raise TelemetryRejected({"file": ["the file has no rows"]})
    for name, kind in schema.features.items():
        arr = columns[name]
        path = f"features.{name}"
        if kind == NUMERIC:
            if arr.dtype.kind != "f":
                errors.add(path, f"wrong type: expected numbers, the file has {arr.dtype}")
                continue
            # Arrow gives nulls as NaN, so only infinities can be told apart here.
            inf = np.isinf(arr)
            if inf.any():
                errors.add(path, f"infinite value {_positions(inf)}")
        else:
            want = schema.category_types[name]
            vals = arr.tolist()
            _check_categorical(vals, path, want, errors)
    if "prediction_id" in columns:
        _check_ids(columns["prediction_id"].tolist(), "prediction_ids", rows, errors)
    if "latency_ms" in columns:
        lat = columns["latency_ms"]
        if lat.dtype.kind != "f" or not np.isfinite(lat).all() or (lat < 0).any():
            errors.add("latency_ms", "expected finite, non-negative numbers without nulls")
    if "prediction" in columns:
        preds = columns["prediction"]
        values = (
            [None if math.isnan(v) else v for v in preds.tolist()]
            if preds.dtype.kind == "f"
            else preds.tolist()
        )
        check_predictions(values, rows, schema, errors)
    errors.raise_if_any()
    return {"rows": rows}


def check_profile(data: Any, schema: Schema, reference: DatasetProfile) -> dict[str, Any]:
    """A window profile computed by the client on the reference's bins and categories."""
    errors = _Errors()
    if not isinstance(data, Mapping):
        raise TelemetryRejected({"body": ["expected a JSON object"]})
    for key in sorted(set(data) - PROFILE_KEYS):
        errors.add(key, f"unknown field (expected some of {sorted(PROFILE_KEYS)})")
    errors.raise_if_any()
    try:
        profile = DatasetProfile.from_dict(data.get("profile"))
    except ValueError as exc:
        raise TelemetryRejected({"profile": [str(exc)]}) from None
    for name in sorted(set(profile.features) - set(schema.features)):
        errors.add(f"profile.features.{name}", "unknown feature (not in the reference profile)")
    for name in sorted(set(schema.features) - set(profile.features)):
        errors.add(f"profile.features.{name}", "missing feature (the reference profile has it)")
    errors.raise_if_any()
    if profile.rows == 0:
        raise TelemetryRejected({"profile.rows": ["the profile has no rows"]})
    for name, fp in profile.features.items():
        ref = reference[name]
        path = f"profile.features.{name}"
        if fp.kind != ref.kind:
            errors.add(f"{path}.kind", f"expected {ref.kind}, got {fp.kind}")
        elif fp.numeric and not np.array_equal(fp.edges, ref.edges):
            errors.add(
                f"{path}.edges",
                "differ from the reference's bin edges (build the window with "
                "window_profile(reference))",
            )
    predictions = data.get("predictions")
    if predictions is not None:
        try:
            pred = FeatureProfile.from_dict("prediction", predictions, "predictions")
        except ValueError as exc:
            errors.add("predictions", str(exc))
        else:
            if schema.prediction_kind and pred.kind != schema.prediction_kind:
                errors.add("predictions.kind", f"expected {schema.prediction_kind}")
    service = data.get("service")
    if service is not None:
        try:
            ServiceMetrics.from_dict(service)
        except ValueError as exc:
            errors.add("service", str(exc))
    errors.raise_if_any()
    return {"rows": profile.rows}


def check_labels(data: Any, max_rows: int) -> dict[str, Any]:
    """``prediction_ids`` and ``labels`` (booleans, integers or strings), one to one."""
    errors = _Errors()
    if not isinstance(data, Mapping):
        raise TelemetryRejected({"body": ["expected a JSON object"]})
    for key in sorted(set(data) - LABEL_KEYS):
        errors.add(key, f"unknown field (expected some of {sorted(LABEL_KEYS)})")
    labels = data.get("labels")
    if not isinstance(labels, list) or not labels:
        errors.add("labels", "required: a non-empty list of labels")
        errors.raise_if_any()
    if len(labels) > max_rows:
        raise TelemetryRejected(
            {"labels": [f"{len(labels)} labels; the limit is {max_rows} per batch"]},
            too_large=True,
        )
    ids = _check_ids(data.get("prediction_ids"), "prediction_ids", len(labels), errors)
    types = set(map(type, labels))
    if not types <= {bool, int, str, float}:
        errors.add("labels", "wrong type: labels are booleans, integers, numbers or strings")
    elif float in types:
        check_numeric_list(labels, "labels", errors, nulls=False)
    errors.raise_if_any()
    return {"prediction_ids": ids, "labels": labels, "rows": len(labels)}
