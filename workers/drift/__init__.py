"""Drift statistics and mergeable profiles (pure numpy/scipy; no Django, no project imports)."""

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

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "SCHEMA_VERSION",
    "DatasetProfile",
    "FeatureProfile",
    "build_reference_profile",
    "fold",
    "infer_kind",
    "merge",
    "read_csv_columns",
    "read_parquet_columns",
    "window_profile",
]
