"""Drift detection rules: Evidently 0.7's DataDriftPreset defaults, on raw arrays or profiles.

The defaults, read from Evidently 0.7.23 (``legacy/calculations/stattests/registry.py``
``_get_default_stattest``, ``legacy/calculations/data_drift.py`` ``get_one_column_drift``):

* Both columns are cleaned first: ``±inf`` become NaN and NaNs (nulls) are dropped. "Reference
  rows" below is the size of the *cleaned* reference; an empty column is an error.
* ``n_unique`` is the number of distinct values of reference ∪ current (``pd.concat(...)
  .nunique()``, nulls excluded).
* Reference with at most 1,000 rows: numeric with ``n_unique > 5`` → Kolmogorov–Smirnov
  (drift when ``p <= 0.05``); numeric with ``n_unique <= 5`` and every categorical →
  chi-square goodness of fit when ``n_unique > 2`` else the two-proportion Z-test (drift when
  ``p < 0.05`` — strictly less, unlike KS).
* Reference with more than 1,000 rows: numeric with ``n_unique > 5`` → Wasserstein distance
  over the reference's standard deviation (drift when ``>= 0.1``); otherwise Jensen–Shannon
  distance on per-value shares, natural log (drift when ``>= 0.1``).
* The dataset drifts when the share of drifted features is ``>= drift_share`` (0.5).
* Overrides resolve per feature, then per kind (numeric / categorical), then globally, both for
  the method and the threshold; a threshold override applies to whatever method is chosen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import approx, stats
from .profile import (
    KINDS,
    NUMERIC,
    DatasetProfile,
    FeatureProfile,
    _null_mask,
    _to_float,
    infer_kind,
)

__all__ = [
    "METHODS",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "MethodSpec",
    "default_method",
    "detect_drift",
    "detect_drift_from_profiles",
    "feature_drift",
    "feature_drift_from_profiles",
    "prediction_drift",
    "prediction_drift_from_profiles",
]

#: Evidently switches from the small-sample tests to distances above this many reference rows.
SMALL_REFERENCE_ROWS = 1000
#: ... and from KS / Wasserstein to frequency tests at or below this many distinct values.
LOW_CARDINALITY = 5


@dataclass(frozen=True)
class MethodSpec:
    """A drift method: its default threshold and how its score is compared with it."""

    name: str
    default_threshold: float
    p_value: bool  # score is a p-value (drift when small) rather than a distance
    inclusive: bool  # p-values: drift when ``score <= t`` (else ``< t``); distances use ``>=``
    kinds: tuple[str, ...]
    evidently_name: str

    def drifted(self, score: float, threshold: float) -> bool:
        if self.p_value:
            return score <= threshold if self.inclusive else score < threshold
        return score >= threshold


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec("ks", 0.05, True, True, (NUMERIC,), "K-S p_value"),
        MethodSpec("chisquare", 0.05, True, False, KINDS, "chi-square p_value"),
        MethodSpec("z", 0.05, True, False, KINDS, "Z-test p_value"),
        MethodSpec("wasserstein", 0.1, False, True, (NUMERIC,), "Wasserstein distance (normed)"),
        MethodSpec("jensenshannon", 0.1, False, True, KINDS, "Jensen-Shannon distance"),
        MethodSpec("psi", 0.1, False, True, KINDS, "PSI"),
    )
}


def default_method(kind: str, n_reference: int, n_unique: int | None) -> str:
    """Evidently's default method; ``n_unique=None`` means "more than can be counted" (> 5)."""
    many = n_unique is None or n_unique > LOW_CARDINALITY
    if n_reference <= SMALL_REFERENCE_ROWS:
        if kind == NUMERIC and many:
            return "ks"
        return "chisquare" if (n_unique is None or n_unique > 2) else "z"
    if kind == NUMERIC and many:
        return "wasserstein"
    return "jensenshannon"


def _check_method(name: str, where: str) -> None:
    if name not in METHODS:
        raise ValueError(f"{where}: unknown method {name!r}; choose from {sorted(METHODS)}")


def _check_threshold(value: float, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")


@dataclass(frozen=True)
class DriftConfig:
    """Method / threshold overrides (``None`` = Evidently's default) and the dataset share."""

    method: str | None = None
    threshold: float | None = None
    num_method: str | None = None
    cat_method: str | None = None
    num_threshold: float | None = None
    cat_threshold: float | None = None
    per_feature_method: Mapping[str, str] = field(default_factory=dict)
    per_feature_threshold: Mapping[str, float] = field(default_factory=dict)
    drift_share: float = 0.5

    def __post_init__(self) -> None:
        for key in ("method", "num_method", "cat_method"):
            value = getattr(self, key)
            if value is not None:
                _check_method(value, key)
        for key in ("threshold", "num_threshold", "cat_threshold"):
            value = getattr(self, key)
            if value is not None:
                _check_threshold(value, key)
        for name, value in self.per_feature_method.items():
            _check_method(value, f"per_feature_method[{name!r}]")
        for name, value in self.per_feature_threshold.items():
            _check_threshold(value, f"per_feature_threshold[{name!r}]")
        _check_threshold(self.drift_share, "drift_share")
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share: expected 0 < share <= 1, got {self.drift_share}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown drift config keys: {sorted(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "threshold": self.threshold,
            "num_method": self.num_method,
            "cat_method": self.cat_method,
            "num_threshold": self.num_threshold,
            "cat_threshold": self.cat_threshold,
            "per_feature_method": dict(self.per_feature_method),
            "per_feature_threshold": dict(self.per_feature_threshold),
            "drift_share": self.drift_share,
        }

    def method_for(self, feature: str, kind: str) -> str | None:
        if feature in self.per_feature_method:
            return self.per_feature_method[feature]
        kind_method = self.num_method if kind == NUMERIC else self.cat_method
        return kind_method if kind_method is not None else self.method

    def threshold_for(self, feature: str, kind: str) -> float | None:
        if feature in self.per_feature_threshold:
            return self.per_feature_threshold[feature]
        kind_threshold = self.num_threshold if kind == NUMERIC else self.cat_threshold
        return kind_threshold if kind_threshold is not None else self.threshold


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class FeatureDrift:
    """Drift verdict for one feature.

    ``score`` is what is compared with ``threshold`` (Evidently's "drift score": a p-value for
    ``ks``/``chisquare``/``z``, a distance otherwise); ``statistic`` is the test statistic (KS
    ``D``, chi-square, ``z``) or the distance again. ``n_unique`` is the number of distinct values
    of reference ∪ current when known (``None``: more than 5 on raw arrays, which are not counted
    further, or more than ``max_values`` on profiles). For profile-based results ``score_low`` /
    ``score_high`` bound the score that the raw data would give; ``basis`` says what the score was
    computed from.
    """

    feature: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    statistic: float
    n_reference: int
    n_current: int
    n_unique: int | None
    basis: str
    score_low: float | None = None
    score_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "method": self.method,
            "score": _finite_or_none(self.score),
            "threshold": float(self.threshold),
            "drifted": bool(self.drifted),
            "statistic": _finite_or_none(self.statistic),
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
            "n_unique": self.n_unique,
            "basis": self.basis,
            "score_low": _finite_or_none(self.score_low),
            "score_high": _finite_or_none(self.score_high),
        }


@dataclass(frozen=True)
class DriftReport:
    """Per-feature verdicts and the dataset verdict (share of drifted features >= drift_share)."""

    features: tuple[FeatureDrift, ...]
    drift_share: float = 0.5

    @property
    def n_drifted(self) -> int:
        return sum(1 for f in self.features if f.drifted)

    @property
    def share_drifted(self) -> float:
        return self.n_drifted / len(self.features) if self.features else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.features) and self.share_drifted >= self.drift_share

    def __getitem__(self, feature: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == feature:
                return f
        raise KeyError(feature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "share_drifted": self.share_drifted,
            "n_drifted": self.n_drifted,
            "n_features": len(self.features),
            "drift_share": self.drift_share,
            "features": [f.to_dict() for f in self.features],
        }


def _resolve(
    feature: str,
    kind: str,
    config: DriftConfig,
    n_reference: int,
    n_unique: Any,
) -> tuple[MethodSpec, float, int | None]:
    """Method and threshold; ``n_unique`` is a value or a zero-argument callable (lazy)."""
    chosen = config.method_for(feature, kind)
    unique = None
    if chosen is None:
        unique = n_unique() if callable(n_unique) else n_unique
        chosen = default_method(kind, n_reference, unique)
    spec = METHODS[chosen]
    if kind not in spec.kinds:
        raise ValueError(f"feature {feature!r}: method {chosen!r} does not apply to {kind} data")
    threshold = config.threshold_for(feature, kind)
    return spec, spec.default_threshold if threshold is None else float(threshold), unique


# -- exact, on raw arrays -------------------------------------------------------------------------


def _clean_numeric(values: Any, name: str, which: str) -> np.ndarray:
    v = _to_float(values, name)
    if not np.isfinite(v).all():
        v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError(f"feature {name!r}: the {which} column has no valid values")
    return v


def _clean_categorical(values: Any, name: str, which: str) -> np.ndarray:
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    arr = arr.ravel()
    mask = _null_mask(arr)
    if mask is not None and mask.any():
        arr = arr[~mask]
    if arr.size == 0:
        raise ValueError(f"feature {name!r}: the {which} column has no valid values")
    return arr


def _numeric_unique(ref: np.ndarray, cur: np.ndarray) -> int | None:
    """Distinct values of ref ∪ cur if at most 5, else None (a prefix usually settles it)."""
    head = np.unique(np.concatenate([ref[:512], cur[:512]]))
    if head.size > LOW_CARDINALITY:
        return None
    n = np.unique(np.concatenate([ref, cur])).size
    return n if n <= LOW_CARDINALITY else None


def feature_drift(
    name: str,
    reference: Any,
    current: Any,
    kind: str | None = None,
    config: DriftConfig | None = None,
) -> FeatureDrift:
    """Drift of one feature from its raw reference and current values (exact statistics)."""
    config = config or DriftConfig()
    kind = kind or infer_kind(reference)
    if kind not in KINDS:
        raise ValueError(f"feature {name!r}: kind must be one of {KINDS}, got {kind!r}")
    if kind == NUMERIC:
        ref = _clean_numeric(reference, name, "reference")
        cur = _clean_numeric(current, name, "current")
        spec, threshold, unique = _resolve(
            name, kind, config, ref.size, lambda: _numeric_unique(ref, cur)
        )
        score, statistic = _exact_numeric(spec.name, ref, cur)
    else:
        ref = _clean_categorical(reference, name, "reference")
        cur = _clean_categorical(current, name, "current")
        keys, rc, cc = stats.aligned_counts(ref, cur)
        unique = len(keys)
        spec, threshold, _ = _resolve(name, kind, config, ref.size, unique)
        score, statistic = _exact_counts(spec.name, keys, rc, cc, ref, cur)
    return FeatureDrift(
        feature=name,
        kind=kind,
        method=spec.name,
        score=score,
        threshold=threshold,
        drifted=spec.drifted(score, threshold),
        statistic=statistic,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        n_unique=unique,
        basis="raw",
    )


def _exact_numeric(method: str, ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    if method == "ks":
        a, b = np.sort(ref), np.sort(cur)
        d = stats.ks_statistic_sorted(a, b)
        return stats.ks_pvalue(d, a.size, b.size), d
    if method == "wasserstein":
        a, b = np.sort(ref), np.sort(cur)
        norm = max(float(np.std(ref)), stats.MIN_NORM_STD)
        value = stats.wasserstein_distance_sorted(a, b) / norm
        return value, value
    if method in ("jensenshannon", "psi"):
        rp, cp = stats.evidently_binned_frequencies(ref, cur, numeric=True)
        value = stats.jensenshannon(rp, cp) if method == "jensenshannon" else stats.psi(rp, cp)
        return value, value
    keys, rc, cc = stats.aligned_counts(ref, cur)
    return _exact_counts(method, keys, rc, cc, ref, cur)


def _exact_counts(
    method: str, keys: list[Any], rc: np.ndarray, cc: np.ndarray, ref: Any, cur: Any
) -> tuple[float, float]:
    if method == "chisquare":
        res = stats.chi_square_gof(rc, cc)
        return res.pvalue, res.statistic
    if method == "z":
        res = _z_from_counts(keys, rc, cc)
        return res.pvalue, res.statistic
    if method == "jensenshannon":
        value = stats.jensenshannon(rc / rc.sum(), cc / cc.sum())
        return value, value
    if method == "psi":
        value = stats.psi(rc / rc.sum(), cc / cc.sum())
        return value, value
    raise ValueError(f"method {method!r} needs numeric data")  # pragma: no cover - kinds checked


def _z_from_counts(keys: list[Any], rc: np.ndarray, cc: np.ndarray) -> stats.TestResult:
    """Evidently's Z-test: the first value in sorted order is class 0, all others class 1."""
    n_ref, n_cur = int(rc.sum()), int(cc.sum())
    present_ref = [k for k, c in zip(keys, rc, strict=True) if c > 0]
    present_cur = [k for k, c in zip(keys, cc, strict=True) if c > 0]
    if len(present_ref) == 1 and len(present_cur) == 1 and present_ref[0] == present_cur[0]:
        return stats.TestResult(0.0, 1.0)
    try:
        first = sorted(keys)[0]
    except TypeError:
        first = sorted(keys, key=str)[0]
    i = keys.index(first)
    return stats.z_test_proportions(n_ref - int(rc[i]), n_ref, n_cur - int(cc[i]), n_cur)


def detect_drift(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    kinds: Mapping[str, str] | None = None,
    config: DriftConfig | None = None,
    columns: Iterable[str] | None = None,
) -> DriftReport:
    """Drift of every column (or ``columns``) from raw ``name -> array`` mappings."""
    config = config or DriftConfig()
    names = list(columns) if columns is not None else list(reference)
    missing = [n for n in names if n not in reference or n not in current]
    if missing:
        raise ValueError(f"columns missing from reference or current: {missing}")
    kinds = kinds or {}
    results = tuple(feature_drift(n, reference[n], current[n], kinds.get(n), config) for n in names)
    return DriftReport(results, config.drift_share)


# -- from profiles --------------------------------------------------------------------------------


def _complete_sample(fp: FeatureProfile) -> bool:
    return fp.sample.values.size == fp.n and fp.sample.seen == fp.n


def feature_drift_from_profiles(
    reference: FeatureProfile, current: FeatureProfile, config: DriftConfig | None = None
) -> FeatureDrift:
    """Drift of one feature from its reference and window profiles.

    KS and Wasserstein are computed exactly from the reservoirs when both hold every value
    (``basis='sample-complete'``); otherwise they are the binned approximations of
    :mod:`workers.drift.approx` (``basis='bins'``) with their guaranteed score bounds. Frequency
    methods are exact on the value counts (``basis='values'``), or use the reference's quantile
    bins for a continuous feature (``'quantile-bins'``) or count an ``other`` bucket
    (``'values+other'``).
    """
    config = config or DriftConfig()
    name, kind = reference.name, reference.kind
    approx._check_pair(reference, current)
    unique = approx.union_unique(reference, current)
    spec, threshold, _ = _resolve(name, kind, config, reference.n, unique)
    low = high = None
    method = spec.name
    if (
        method in ("ks", "wasserstein")
        and _complete_sample(reference)
        and _complete_sample(current)
    ):
        score, statistic = _exact_numeric(
            method,
            reference.sample.values.astype(np.float64),
            current.sample.values.astype(np.float64),
        )
        basis = "sample-complete"
    elif method == "ks":
        d, p = approx.ks_from_profiles(reference, current)
        score, statistic, low, high, basis = p.value, d.value, p.low, p.high, "bins"
    elif method == "wasserstein":
        w = approx.wasserstein_normed_from_profiles(reference, current)
        score, statistic, low, high, basis = w.value, w.value, w.low, w.high, "bins"
    elif method in ("jensenshannon", "psi"):
        rc, cc, basis = approx.frequency_vectors(reference, current)
        if method == "jensenshannon":
            score = stats.jensenshannon(rc, cc)
        else:
            score = stats.psi(rc / reference.n, cc / current.n)
        statistic = score
    else:
        rc, cc, exact = approx.value_count_vectors(reference, current)
        basis = "values" if exact else "values+other"
        if method == "chisquare":
            res = stats.chi_square_gof(rc, cc)
        else:
            keys, _, _ = stats.counts_from_mapping(reference.values, current.values)
            if not exact:
                raise ValueError(f"feature {name!r}: Z-test needs exact value counts")
            res = _z_from_counts(keys, rc, cc)
        score, statistic = res.pvalue, res.statistic
    return FeatureDrift(
        feature=name,
        kind=kind,
        method=method,
        score=float(score),
        threshold=threshold,
        drifted=spec.drifted(float(score), threshold),
        statistic=float(statistic),
        n_reference=reference.n,
        n_current=current.n,
        n_unique=unique,
        basis=basis,
        score_low=low,
        score_high=high,
    )


def detect_drift_from_profiles(
    reference: DatasetProfile,
    current: DatasetProfile,
    config: DriftConfig | None = None,
    columns: Iterable[str] | None = None,
) -> DriftReport:
    """Drift of every feature (or ``columns``) from a reference and a window profile."""
    config = config or DriftConfig()
    names = list(columns) if columns is not None else list(reference.features)
    missing = [n for n in names if n not in reference.features or n not in current.features]
    if missing:
        raise ValueError(f"features missing from reference or window profile: {missing}")
    results = tuple(feature_drift_from_profiles(reference[n], current[n], config) for n in names)
    return DriftReport(results, config.drift_share)


# -- prediction drift -----------------------------------------------------------------------------


def prediction_drift(
    reference_predictions: Any,
    current_predictions: Any,
    kind: str | None = None,
    config: DriftConfig | None = None,
    name: str = "prediction",
) -> FeatureDrift:
    """Drift of a model's predictions (scores or labels) — the same rules as for a feature."""
    return feature_drift(name, reference_predictions, current_predictions, kind, config)


def prediction_drift_from_profiles(
    reference: FeatureProfile, current: FeatureProfile, config: DriftConfig | None = None
) -> FeatureDrift:
    """Prediction drift from the prediction column's reference and window profiles."""
    return feature_drift_from_profiles(reference, current, config)
