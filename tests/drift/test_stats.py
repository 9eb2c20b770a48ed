"""Exact statistics against scipy (and Evidently's own stattest functions) to 1e-9."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.spatial.distance as ssd
import scipy.stats as ss
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (
    _wasserstein_distance_norm,
)
from evidently.legacy.core import ColumnType

from workers.drift import stats

REL = 1e-9


def _samples(seed: int, n1: int, n2: int, ties: bool, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, n1)
    b = rng.normal(shift, 1.2, n2)
    if ties:  # heavy ties inside and across the samples
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


SIZES = [
    (7, 30, 45, False, 0.0),
    (8, 30, 45, True, 0.5),
    (9, 500, 500, False, 0.1),
    (10, 500, 500, True, 0.0),
    (11, 1200, 800, True, 0.2),
    (12, 3001, 2999, False, 0.05),
    (13, 10_000, 7_000, False, 0.03),  # largest exact KS p-value size
    (14, 12_000, 9_000, True, 0.02),  # asymptotic KS p-value
    (15, 2, 3, False, 1.0),
]


@pytest.mark.parametrize(("seed", "n1", "n2", "ties", "shift"), SIZES)
def test_ks_matches_scipy(seed: int, n1: int, n2: int, ties: bool, shift: float) -> None:
    a, b = _samples(seed, n1, n2, ties, shift)
    ours = stats.ks_2samp(a, b)
    ref = ss.ks_2samp(a, b)
    assert ours.statistic == pytest.approx(ref.statistic, rel=REL, abs=1e-15)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=REL, abs=1e-300)


@pytest.mark.parametrize(("seed", "n1", "n2", "ties", "shift"), SIZES)
def test_wasserstein_matches_scipy(seed: int, n1: int, n2: int, ties: bool, shift: float) -> None:
    a, b = _samples(seed, n1, n2, ties, shift)
    expected = ss.wasserstein_distance(a, b)
    assert stats.wasserstein_distance(a, b) == pytest.approx(expected, rel=REL, abs=1e-15)
    assert stats.wasserstein_normed(a, b) == pytest.approx(expected / np.std(a), rel=REL)


def test_wasserstein_normed_equals_evidently_including_constant_reference() -> None:
    a, b = _samples(3, 400, 300, False, 0.3)
    value, _ = _wasserstein_distance_norm(pd.Series(a), pd.Series(b), ColumnType.Numerical, 0.1)
    assert stats.wasserstein_normed(a, b) == pytest.approx(value, rel=REL)
    const = np.full(50, 2.0)
    value, _ = _wasserstein_distance_norm(pd.Series(const), pd.Series(b), ColumnType.Numerical, 0.1)
    assert stats.wasserstein_normed(const, b) == pytest.approx(value, rel=REL)  # std floored


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("base", [None, 2.0])
def test_jensenshannon_matches_scipy(seed: int, base: float | None) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 40))
    p = rng.integers(0, 50, k).astype(float)
    q = rng.integers(0, 50, k).astype(float)
    p[0] += 1
    q[-1] += 1  # no all-zero vector; some zero bins remain
    assert stats.jensenshannon(p, q, base) == pytest.approx(
        ssd.jensenshannon(p, q, base), rel=REL, abs=1e-15
    )
    assert stats.jensenshannon(p, p) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_binned_js_and_psi_match_evidently(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # numeric with > 20 distinct values: Sturges bins over both samples
    a = rng.normal(0, 1, 700 + 100 * seed)
    b = rng.normal(0.2 * seed, 1, 500)
    ra, rb = pd.Series(a), pd.Series(b)
    rp, cp = stats.evidently_binned_frequencies(a, b, numeric=True)
    js, _ = _jensenshannon(ra, rb, ColumnType.Numerical, 0.1)
    psi, _ = _psi(ra, rb, ColumnType.Numerical, 0.1)
    assert stats.jensenshannon(rp, cp) == pytest.approx(js, rel=REL)
    assert stats.psi(rp, cp) == pytest.approx(psi, rel=REL)
    # categorical: per value over the union (one category only in the current sample)
    ca = rng.choice(["a", "b", "c"], 300).astype(object)
    cb = rng.choice(["a", "b", "c", "new"], 200, p=[0.3, 0.3, 0.3, 0.1]).astype(object)
    rp, cp = stats.evidently_binned_frequencies(ca, cb, numeric=False)
    js, _ = _jensenshannon(pd.Series(ca), pd.Series(cb), ColumnType.Categorical, 0.1)
    psi, _ = _psi(pd.Series(ca), pd.Series(cb), ColumnType.Categorical, 0.1)
    assert stats.jensenshannon(rp, cp) == pytest.approx(js, rel=REL)
    assert stats.psi(rp, cp) == pytest.approx(psi, rel=REL)


@pytest.mark.parametrize("k", [2, 3, 6])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("correction", [True, False])
def test_chi2_contingency_matches_scipy(k: int, seed: int, correction: bool) -> None:
    rng = np.random.default_rng(seed)
    table = rng.integers(1, 400, size=(2, k))
    stat, p, dof = stats.chi2_contingency(table, correction=correction)
    ref = ss.chi2_contingency(table, correction=correction)
    assert stat == pytest.approx(ref.statistic, rel=REL)
    assert p == pytest.approx(ref.pvalue, rel=REL)
    assert dof == ref.dof


@pytest.mark.parametrize("seed", range(4))
def test_chi_square_goodness_of_fit_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(5, 300, 5).astype(float)
    cur = rng.integers(5, 300, 5).astype(float)
    res = stats.chi_square_gof(ref, cur)
    expected = ss.chisquare(cur, ref * cur.sum() / ref.sum())
    assert res.statistic == pytest.approx(expected.statistic, rel=REL)
    assert res.pvalue == pytest.approx(expected.pvalue, rel=REL)


def test_chi_square_goodness_of_fit_new_category_is_certain_drift() -> None:
    res = stats.chi_square_gof([10, 20, 0], [10, 20, 5])
    assert res.statistic == np.inf
    assert res.pvalue == 0.0


@pytest.mark.parametrize(
    ("ones_ref", "n_ref", "ones_cur", "n_cur"),
    [
        (30, 100, 45, 120),
        (500, 1000, 520, 1000),
        (3, 40, 0, 35),
        (999, 1000, 1000, 1000),
    ],
)
def test_z_test_squared_is_the_uncorrected_2x2_chi_square(
    ones_ref: int, n_ref: int, ones_cur: int, n_cur: int
) -> None:
    res = stats.z_test_proportions(ones_ref, n_ref, ones_cur, n_cur)
    table = [[ones_ref, n_ref - ones_ref], [ones_cur, n_cur - ones_cur]]
    ref = ss.chi2_contingency(table, correction=False)
    assert res.statistic**2 == pytest.approx(ref.statistic, rel=REL)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)


def test_z_test_binary_constant_equal_samples_is_no_drift() -> None:
    assert stats.z_test_binary(["a"] * 5, ["a"] * 9) == stats.TestResult(0.0, 1.0)
    different = stats.z_test_binary(["a"] * 50, ["b"] * 40)
    assert different.pvalue < 1e-10


def test_ks_p_value_switches_to_asymptotic_above_ten_thousand() -> None:
    for n1, n2 in [(10_000, 9_000), (10_001, 9_000)]:
        a, b = _samples(1, n1, n2, False, 0.03)
        assert stats.ks_2samp(a, b).pvalue == pytest.approx(ss.ks_2samp(a, b).pvalue, rel=REL)


def test_empty_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        stats.ks_2samp([], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        stats.wasserstein_distance([1.0], [])
    with pytest.raises(ValueError, match="zero row or column"):
        stats.chi2_contingency([[0, 0], [1, 2]])
    with pytest.raises(ValueError, match="same length"):
        stats.jensenshannon([1, 2], [1, 2, 3])
