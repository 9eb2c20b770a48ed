"""Detection rules, overrides, results, prediction drift."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workers.drift import (
    METHODS,
    DriftConfig,
    build_reference_profile,
    default_method,
    detect_drift,
    detect_drift_from_profiles,
    feature_drift,
    fold,
    prediction_drift,
    prediction_drift_from_profiles,
    window_profile,
)


@pytest.mark.parametrize(
    ("kind", "n_ref", "n_unique", "expected"),
    [
        ("numeric", 1000, 6, "ks"),
        ("numeric", 1000, None, "ks"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1000, 5, "chisquare"),
        ("numeric", 1000, 3, "chisquare"),
        ("numeric", 1000, 2, "z"),
        ("numeric", 1001, 5, "jensenshannon"),
        ("numeric", 1001, 2, "jensenshannon"),
        ("categorical", 1000, 40, "chisquare"),
        ("categorical", 1000, None, "chisquare"),
        ("categorical", 10, 2, "z"),
        ("categorical", 1001, 2, "jensenshannon"),
        ("categorical", 5000, 40, "jensenshannon"),
    ],
)
def test_default_method_table(kind: str, n_ref: int, n_unique: int | None, expected: str) -> None:
    assert default_method(kind, n_ref, n_unique) == expected


def test_threshold_comparisons_follow_evidently() -> None:
    assert METHODS["ks"].drifted(0.05, 0.05)  # p <= threshold
    assert not METHODS["chisquare"].drifted(0.05, 0.05)  # p < threshold
    assert not METHODS["z"].drifted(0.05, 0.05)
    assert METHODS["wasserstein"].drifted(0.1, 0.1)  # distance >= threshold
    assert METHODS["jensenshannon"].drifted(0.1, 0.1)
    assert not METHODS["psi"].drifted(0.0999, 0.1)


def test_reference_size_is_counted_after_dropping_nulls() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=1005)
    ref[:10] = np.nan  # 995 valid rows: the small-reference branch
    cur = rng.normal(size=800)
    assert feature_drift("x", ref, cur).method == "ks"
    ref[:10] = 0.5
    assert feature_drift("x", ref, cur).method == "wasserstein"
    ref[:10] = np.inf  # infinities are dropped like nulls
    assert feature_drift("x", ref, cur).method == "ks"


def test_unique_values_are_counted_over_both_samples() -> None:
    ref = np.array([0.0, 1.0, 2.0] * 100)
    assert feature_drift("k", ref, np.array([0.0, 1.0, 2.0, 3.0, 4.0] * 20)).method == "chisquare"
    assert feature_drift("k", ref, np.array([0.0, 3.0, 4.0, 5.0] * 20)).method == "ks"
    assert feature_drift("b", np.array([0.0, 1.0] * 50), np.array([1.0] * 30)).method == "z"


def _data(seed: int, n: int, shift: float):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(shift, 1, n),
        "b": rng.normal(0, 1, n),
        "c": rng.choice(["x", "y", "z"], n, p=[0.2, 0.3, 0.5] if shift else None).astype(object),
    }


def test_overrides_resolve_per_feature_then_kind_then_global() -> None:
    ref, cur = _data(1, 3000, 0.3), _data(2, 3000, 0.3)
    config = DriftConfig(
        method="psi",
        num_method="ks",
        per_feature_method={"b": "wasserstein"},
        threshold=0.2,
        cat_threshold=0.3,
        per_feature_threshold={"a": 0.01},
    )
    report = detect_drift(ref, cur, config=config)
    assert [(f.feature, f.method, f.threshold) for f in report.features] == [
        ("a", "ks", 0.01),
        ("b", "wasserstein", 0.2),
        ("c", "psi", 0.3),
    ]
    assert DriftConfig.from_dict(config.to_dict()) == config


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown method 'kss'"):
        DriftConfig(method="kss")
    with pytest.raises(ValueError, match="drift_share"):
        DriftConfig(drift_share=0)
    with pytest.raises(ValueError, match=r"per_feature_threshold\['a'\]"):
        DriftConfig(per_feature_threshold={"a": float("nan")})
    with pytest.raises(ValueError, match="unknown drift config keys"):
        DriftConfig.from_dict({"methd": "ks"})
    ref, cur = _data(1, 100, 0), _data(2, 100, 0)
    with pytest.raises(ValueError, match="does not apply to categorical"):
        detect_drift(ref, cur, config=DriftConfig(per_feature_method={"c": "ks"}))


def test_dataset_verdict_uses_the_drift_share() -> None:
    ref, cur = _data(1, 3000, 0.0), _data(2, 3000, 0.5)
    report = detect_drift(ref, cur)
    assert [f.drifted for f in report.features] == [True, False, True]
    assert report.share_drifted == pytest.approx(2 / 3) and report.dataset_drift
    assert not detect_drift(ref, cur, config=DriftConfig(drift_share=0.7)).dataset_drift


def test_results_are_json_serialisable_including_infinite_statistics() -> None:
    ref = {"c": np.array(["a", "b"] * 200, dtype=object)}
    cur = {"c": np.array(["a", "b", "new"] * 100, dtype=object)}
    report = detect_drift(ref, cur)
    feature = report["c"]
    assert feature.method == "chisquare" and feature.statistic == np.inf and feature.drifted
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["features"][0]["statistic"] is None and data["features"][0]["score"] == 0.0
    assert data["dataset_drift"] is True and data["n_features"] == 1


def test_empty_columns_are_errors_like_in_evidently() -> None:
    with pytest.raises(ValueError, match="reference column has no valid values"):
        feature_drift("x", [np.nan, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="current column has no valid values"):
        feature_drift("c", ["a"], np.array([None], dtype=object), kind="categorical")


def test_profile_and_exact_reports_agree_on_a_mixed_dataset() -> None:
    ref, cur = _data(3, 20_000, 0.0), _data(4, 15_000, 0.4)
    exact = detect_drift(ref, cur)
    reference = build_reference_profile(ref, rng=0)
    window = fold(window_profile(reference), cur, rng=0)
    from_profiles = detect_drift_from_profiles(reference, window)
    assert [f.drifted for f in from_profiles.features] == [f.drifted for f in exact.features]
    assert from_profiles["a"].basis == "bins" and from_profiles["c"].basis == "values"
    low, high = from_profiles["a"].score_low, from_profiles["a"].score_high
    assert low <= exact["a"].score * (1 + 1e-9) and exact["a"].score <= high * (1 + 1e-9)
    json.dumps(from_profiles.to_dict(), allow_nan=False)


def test_small_samples_held_whole_give_exact_statistics_from_profiles() -> None:
    rng = np.random.default_rng(8)
    ref, cur = rng.normal(size=600), rng.normal(0.2, size=900)
    reference = build_reference_profile({"x": ref}, rng=0)
    window = fold(window_profile(reference), {"x": cur}, rng=0)
    result = detect_drift_from_profiles(reference, window)["x"]
    exact = feature_drift("x", ref, cur)
    assert result.basis == "sample-complete"
    assert result.score == pytest.approx(exact.score, rel=1e-12)


def test_prediction_drift_for_scores_and_labels() -> None:
    rng = np.random.default_rng(9)
    scores_ref, scores_cur = rng.beta(2, 5, 5000), rng.beta(2.6, 5, 5000)
    drift = prediction_drift(scores_ref, scores_cur)
    assert drift.feature == "prediction" and drift.method == "wasserstein" and drift.drifted
    assert not prediction_drift(scores_ref, rng.beta(2, 5, 5000)).drifted
    labels_ref = rng.choice(["approve", "deny"], 800, p=[0.7, 0.3])
    labels_cur = rng.choice(["approve", "deny"], 800, p=[0.5, 0.5])
    label_drift = prediction_drift(labels_ref, labels_cur, name="decision")
    assert (label_drift.method, label_drift.drifted) == ("z", True)
    reference = build_reference_profile({"prediction": scores_ref}, rng=0)
    window = fold(window_profile(reference), {"prediction": scores_cur}, rng=0)
    from_profiles = prediction_drift_from_profiles(reference["prediction"], window["prediction"])
    assert from_profiles.drifted and from_profiles.score == pytest.approx(drift.score, abs=0.003)
