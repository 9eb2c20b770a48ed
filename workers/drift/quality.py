"""Data-quality checks from a reference and a window profile.

Per feature: the null rate against the reference's (alert on an absolute jump), for numeric
features the share of valid values outside the reference's range ``[min, max]`` (the histogram's
two outer bins, so this is exact) and the count of ``±inf``, for categorical features the
categories never seen in the reference and their share of the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .profile import DatasetProfile, FeatureProfile

__all__ = ["FeatureQuality", "QualityReport", "QualityThresholds", "data_quality"]


@dataclass(frozen=True)
class QualityThresholds:
    """Alert when the null rate rises by more than ``null_rate_jump`` (absolute), when more than
    ``out_of_range_share`` of valid values fall outside the reference range, or when more than
    ``new_category_share`` of valid values are categories unknown to the reference."""

    null_rate_jump: float = 0.05
    out_of_range_share: float = 0.01
    new_category_share: float = 0.0


@dataclass(frozen=True)
class FeatureQuality:
    feature: str
    kind: str
    null_rate_reference: float
    null_rate_current: float
    null_alert: bool
    out_of_range_share: float | None = None
    infinite_current: int | None = None
    out_of_range_alert: bool = False
    new_categories: tuple[Any, ...] = ()
    new_category_share: float | None = None
    new_category_alert: bool = False
    #: the reference itself overflowed its category cap, so "new" may have been in its ``other``
    reference_overflow: bool = False

    @property
    def null_rate_jump(self) -> float:
        return self.null_rate_current - self.null_rate_reference

    @property
    def alert(self) -> bool:
        return self.null_alert or self.out_of_range_alert or self.new_category_alert

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "null_rate_reference": self.null_rate_reference,
            "null_rate_current": self.null_rate_current,
            "null_rate_jump": self.null_rate_jump,
            "null_alert": self.null_alert,
            "out_of_range_share": self.out_of_range_share,
            "infinite_current": self.infinite_current,
            "out_of_range_alert": self.out_of_range_alert,
            "new_categories": list(self.new_categories),
            "new_category_share": self.new_category_share,
            "new_category_alert": self.new_category_alert,
            "reference_overflow": self.reference_overflow,
            "alert": self.alert,
        }


@dataclass(frozen=True)
class QualityReport:
    features: tuple[FeatureQuality, ...]

    @property
    def alert(self) -> bool:
        return any(f.alert for f in self.features)

    def __getitem__(self, feature: str) -> FeatureQuality:
        for f in self.features:
            if f.feature == feature:
                return f
        raise KeyError(feature)

    def to_dict(self) -> dict[str, Any]:
        return {"alert": self.alert, "features": [f.to_dict() for f in self.features]}


def feature_quality(
    reference: FeatureProfile,
    current: FeatureProfile,
    thresholds: QualityThresholds | None = None,
    max_listed: int = 20,
) -> FeatureQuality:
    """Quality checks of one feature; at most ``max_listed`` new categories are listed."""
    t = thresholds or QualityThresholds()
    if reference.kind != current.kind:
        raise ValueError(f"feature {reference.name!r}: {reference.kind} vs {current.kind}")
    ref_null, cur_null = reference.null_rate, current.null_rate
    common: dict[str, Any] = {
        "feature": reference.name,
        "kind": reference.kind,
        "null_rate_reference": ref_null,
        "null_rate_current": cur_null,
        "null_alert": cur_null - ref_null > t.null_rate_jump,
    }
    if reference.numeric:
        share = current.out_of_range / current.n if current.n else 0.0
        return FeatureQuality(
            **common,
            out_of_range_share=share,
            infinite_current=current.infinite,
            out_of_range_alert=share > t.out_of_range_share,
        )
    known = {k for k, c in reference.values.items() if c > 0}
    new = sorted(
        ((c, k) for k, c in current.values.items() if c > 0 and k not in known),
        key=lambda ck: -ck[0],
    )
    # categories past the window's own cap are unknown: count them as new (the safe side)
    new_count = sum(c for c, _ in new) + current.other
    share = new_count / current.n if current.n else 0.0
    return FeatureQuality(
        **common,
        new_categories=tuple(k for _, k in new[:max_listed]),
        new_category_share=share,
        new_category_alert=share > t.new_category_share,
        reference_overflow=bool(reference.other),
    )


def data_quality(
    reference: DatasetProfile,
    current: DatasetProfile,
    thresholds: QualityThresholds | None = None,
) -> QualityReport:
    """Quality checks of every feature of the reference that the window also has."""
    missing = sorted(set(reference.features) - set(current.features))
    if missing:
        raise ValueError(f"features missing from the window profile: {missing}")
    return QualityReport(
        tuple(
            feature_quality(fp, current.features[name], thresholds)
            for name, fp in reference.features.items()
        )
    )
