"""Drift statistics and mergeable profiles (pure numpy/scipy; no Django, no project imports).

* :mod:`.profile` — reference / window profiles: build, fold batches, merge, JSON round trip,
  CSV / Parquet readers.
* :mod:`.stats` — exact statistics on raw arrays (KS, Wasserstein, Jensen–Shannon, PSI,
  chi-square, Z-test).
* :mod:`.approx` — the same statistics from profiles, with guaranteed error bounds.
* :mod:`.detect` — Evidently 0.7's DataDriftPreset rules, per feature and per dataset,
  prediction drift.
* :mod:`.quality` — null-rate jumps, out-of-range values, new categories.
* :mod:`.service` — latency quantiles (mergeable log-scale histogram) and error rate.

See ``docs/drift.md``.
"""

from .detect import (
    METHODS,
    DriftConfig,
    DriftReport,
    FeatureDrift,
    default_method,
    detect_drift,
    detect_drift_from_profiles,
    feature_drift,
    feature_drift_from_profiles,
    prediction_drift,
    prediction_drift_from_profiles,
)
from .profile import (
    CATEGORICAL,
    NUMERIC,
    SCHEMA_VERSION,
    DatasetProfile,
    FeatureProfile,
    build_reference_profile,
    fold,
    infer_kind,
    merge,
    read_csv_columns,
    read_parquet_columns,
    window_profile,
)
from .quality import QualityReport, QualityThresholds, data_quality
from .service import LatencySketch, ServiceMetrics

__all__ = [
    "CATEGORICAL",
    "METHODS",
    "NUMERIC",
    "SCHEMA_VERSION",
    "DatasetProfile",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "FeatureProfile",
    "LatencySketch",
    "QualityReport",
    "QualityThresholds",
    "ServiceMetrics",
    "build_reference_profile",
    "data_quality",
    "default_method",
    "detect_drift",
    "detect_drift_from_profiles",
    "feature_drift",
    "feature_drift_from_profiles",
    "fold",
    "infer_kind",
    "merge",
    "prediction_drift",
    "prediction_drift_from_profiles",
    "read_csv_columns",
    "read_parquet_columns",
    "window_profile",
]
