"""Our drift verdicts against Evidently 0.7's ``Report([DataDriftPreset()])`` on the same data.

Each pair is a reference / current DataFrame with six columns that exercise every default branch:
a continuous numeric (KS or Wasserstein), a second continuous numeric, a low-cardinality numeric
(4 values: chi-square or Jensen–Shannon), a 0/1 numeric (Z-test or Jensen–Shannon), a
multi-valued categorical (chi-square or Jensen–Shannon) and a binary categorical (Z-test or
Jensen–Shannon). Pairs differ in reference size (both sides of the 1,000-row boundary), current
size, which columns drift, and nulls. Evidently's per-column verdict is its "Value Drift" test
status; the dataset verdict is the "Share of Drifted Columns: Less 0.5" test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from workers.drift import (
    METHODS,
    DriftConfig,
    build_reference_profile,
    detect_drift,
    detect_drift_from_profiles,
    fold,
    window_profile,
)

NUMERIC_COLS = ["num", "num2", "low", "flag"]
CATEGORICAL_COLS = ["cat", "yesno"]
KINDS = {**dict.fromkeys(NUMERIC_COLS, "numeric"), **dict.fromkeys(CATEGORICAL_COLS, "categorical")}
# Evidently names an auto-chosen method by its display name and a requested one by its name
EVIDENTLY_METHOD = {
    **{name: name for name in METHODS},
    **{spec.evidently_name: name for name, spec in METHODS.items()},
}


@dataclass(frozen=True)
class Pair:
    seed: int
    n_ref: int
    n_cur: int
    drift: frozenset[str]
    nulls: bool = False


def _frame(rng: np.random.Generator, n: int, drift: frozenset[str], nulls: bool) -> pd.DataFrame:
    def d(col: str) -> bool:
        return col in drift

    df = pd.DataFrame(
        {
            "num": rng.normal(0.6 if d("num") else 0.0, 1.0, n),
            "num2": rng.gamma(2.0, 1.6 if d("num2") else 1.0, n),
            "low": rng.choice(
                [0.0, 1.0, 2.0, 3.0], n, p=[0.1, 0.2, 0.3, 0.4] if d("low") else None
            ),
            "flag": (rng.random(n) < (0.45 if d("flag") else 0.25)).astype(float),
            "cat": rng.choice(
                ["a", "b", "c", "d", "e"], n, p=[0.4, 0.3, 0.1, 0.1, 0.1] if d("cat") else None
            ).astype(object),
            "yesno": rng.choice(
                ["no", "yes"], n, p=[0.4, 0.6] if d("yesno") else [0.7, 0.3]
            ).astype(object),
        }
    )
    if nulls:
        df.loc[df.index[::17], "num"] = np.nan
        df.loc[df.index[::13], "cat"] = None
        df.loc[df.index[::29], "low"] = np.nan
    return df


ALL = frozenset(NUMERIC_COLS + CATEGORICAL_COLS)
PAIRS = [
    # small references (<= 1,000 valid rows): KS, chi-square, Z-test
    Pair(21, 300, 250, frozenset()),
    Pair(2, 500, 400, frozenset({"num", "low", "cat"})),
    Pair(3, 800, 700, ALL),
    Pair(4, 1000, 900, frozenset({"num2", "flag", "yesno", "cat"})),  # the 1,000 boundary: small
    Pair(5, 400, 5000, frozenset({"num", "num2", "yesno"}), nulls=True),  # window > reservoir
    Pair(6, 900, 3000, frozenset({"num"})),
    # large references (> 1,000 valid rows): Wasserstein, Jensen-Shannon
    Pair(7, 1001, 1001, ALL),  # just past the boundary
    Pair(8, 3000, 2000, frozenset()),
    Pair(9, 5000, 4000, frozenset({"num", "low", "flag"})),
    Pair(10, 20000, 10000, frozenset({"num2", "cat", "yesno", "low"}), nulls=True),
    Pair(11, 8000, 500, frozenset({"cat"})),
    Pair(12, 50000, 50000, frozenset({"num", "num2", "low", "flag", "cat"})),
]


def _evidently(
    ref: pd.DataFrame, cur: pd.DataFrame, preset: DataDriftPreset | None = None
) -> tuple[dict[str, dict], bool, float]:
    definition = DataDefinition(
        numerical_columns=NUMERIC_COLS, categorical_columns=CATEGORICAL_COLS
    )
    snapshot = Report([preset or DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    columns: dict[str, dict] = {}
    share = math.nan
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"] == "evidently:metric_v2:ValueDrift":
            columns[config["column"]] = {
                "method": EVIDENTLY_METHOD[config["method"]],
                "threshold": config["threshold"],
                "score": metric["value"],
            }
        elif config["type"] == "evidently:metric_v2:DriftedColumnsCount":
            share = metric["value"]["share"]
    dataset_drift = None
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params["type"] == "evidently:metric_v2:ValueDrift":
            columns[params["column"]]["drifted"] = test["status"] == "FAIL"
        elif params["type"] == "evidently:metric_v2:DriftedColumnsCount":
            dataset_drift = test["status"] == "FAIL"
    assert dataset_drift is not None
    assert set(columns) == set(KINDS)
    assert all("drifted" in c for c in columns.values())
    return columns, dataset_drift, share


def _columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: df[name].to_numpy() for name in df.columns}


@pytest.fixture(scope="module")
def outcomes() -> list[tuple[Pair, dict, bool, float, object, object]]:
    rows = []
    for pair in PAIRS:
        rng = np.random.default_rng(pair.seed)
        ref = _frame(rng, pair.n_ref, frozenset(), pair.nulls)
        cur = _frame(rng, pair.n_cur, pair.drift, pair.nulls)
        columns, dataset_drift, share = _evidently(ref, cur)
        exact = detect_drift(_columns(ref), _columns(cur), kinds=KINDS)
        ref_profile = build_reference_profile(_columns(ref), KINDS, rng=pair.seed)
        window = fold(window_profile(ref_profile), _columns(cur), rng=pair.seed + 1)
        from_profiles = detect_drift_from_profiles(ref_profile, window)
        rows.append((pair, columns, dataset_drift, share, exact, from_profiles))
    return rows


def test_pairs_cover_every_default_branch(outcomes: list) -> None:
    seen = {
        (p.n_ref <= 1000, name, ev["method"], ev["drifted"])
        for p, cols, *_ in outcomes
        for name, ev in cols.items()
    }
    methods_small = {m for small, _, m, _ in seen if small}
    methods_large = {m for small, _, m, _ in seen if not small}
    assert methods_small == {"ks", "chisquare", "z"}
    assert methods_large == {"wasserstein", "jensenshannon"}
    # every column of both regimes is seen drifting and not drifting
    for small in (True, False):
        for name in KINDS:
            assert {d for s, n, _, d in seen if s == small and n == name} == {True, False}, name
    assert {dd for _, _, dd, *_ in outcomes} == {True, False}


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_exact_verdicts_and_scores_equal_evidently(outcomes: list, index: int) -> None:
    pair, columns, dataset_drift, share, exact, _ = outcomes[index]
    for name, ev in columns.items():
        ours = exact[name]
        assert ours.method == ev["method"], (pair, name)
        assert ours.threshold == ev["threshold"], (pair, name)
        assert ours.drifted == ev["drifted"], (pair, name, ours, ev)
        assert ours.score == pytest.approx(ev["score"], rel=1e-9, abs=1e-12), (pair, name)
    assert exact.dataset_drift == dataset_drift
    assert exact.share_drifted == pytest.approx(share)


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_profile_verdicts_equal_exact_ones(outcomes: list, index: int) -> None:
    pair, columns, dataset_drift, _, exact, from_profiles = outcomes[index]
    for name in columns:
        approx, ref = from_profiles[name], exact[name]
        assert approx.method == ref.method, (pair, name)
        assert approx.drifted == ref.drifted, (pair, name, approx, ref)
        if approx.basis in ("values", "sample-complete"):  # exact computations
            assert approx.score == pytest.approx(ref.score, rel=1e-9, abs=1e-12), (pair, name)
        if approx.score_low is not None:  # binned approximations: the bounds hold
            assert approx.score_low <= ref.score * (1 + 1e-9) + 1e-12, (pair, name)
            assert ref.score <= approx.score_high * (1 + 1e-9) + 1e-12, (pair, name)
    assert from_profiles.dataset_drift == dataset_drift


def test_overrides_match_evidently() -> None:
    """Per-column, per-kind and global methods and thresholds, and the drift share."""
    rng = np.random.default_rng(31)
    ref = _frame(rng, 2500, frozenset(), False)
    cur = _frame(rng, 2000, frozenset({"num", "cat", "low"}), False)
    options = {
        "num_method": "ks",
        "cat_method": "jensenshannon",
        "per_column_method": {"num2": "psi", "yesno": "chisquare"},
        "threshold": 0.2,
        "num_threshold": 0.01,
        "per_column_threshold": {"cat": 0.05},
        "drift_share": 0.3,
    }
    columns, dataset_drift, share = _evidently(ref, cur, DataDriftPreset(**options))
    config = DriftConfig(
        num_method="ks",
        cat_method="jensenshannon",
        per_feature_method={"num2": "psi", "yesno": "chisquare"},
        threshold=0.2,
        num_threshold=0.01,
        per_feature_threshold={"cat": 0.05},
        drift_share=0.3,
    )
    exact = detect_drift(_columns(ref), _columns(cur), kinds=KINDS, config=config)
    assert {n: c["method"] for n, c in columns.items()} == {
        "num": "ks",
        "num2": "psi",
        "low": "ks",
        "flag": "ks",
        "cat": "jensenshannon",
        "yesno": "chisquare",
    }
    for name, ev in columns.items():
        ours = exact[name]
        assert (ours.method, ours.threshold, ours.drifted) == (
            ev["method"],
            ev["threshold"],
            ev["drifted"],
        ), name
        assert ours.score == pytest.approx(ev["score"], rel=1e-9, abs=1e-12), name
    assert {c["drifted"] for c in columns.values()} == {True, False}
    assert exact.dataset_drift == dataset_drift
    assert exact.share_drifted == pytest.approx(share)
