"""Drift statistics, exact on raw arrays.

Every function here takes clean inputs: finite numbers for the numeric tests, and already
counted frequency vectors for the frequency tests. Dropping nulls and infinities is the caller's
job (``workers.drift.detect`` does it the way Evidently does: ``±inf`` become NaN, NaNs are
dropped). The approximations computed from profiles live in ``workers.drift.approx``.

The numeric tests work on sorted arrays: a two-sample KS statistic is a walk over the merged
empirical CDFs, and the Wasserstein distance is the integral of the difference of the quantile
functions, whose breakpoints (``i/n1`` and ``j/n2``) are known without looking at the data. The
p-values come from scipy's distributions, exactly as ``scipy.stats.ks_2samp(method='auto')``
computes them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as sps

try:  # the exact small-sample null distribution of the two-sample KS statistic
    from scipy.stats._stats_py import _ks_2samp_prob as _scipy_ks_2samp_prob
except ImportError:  # pragma: no cover - exercised only on a scipy without it
    _scipy_ks_2samp_prob = None

__all__ = [
    "KS_MAX_EXACT_N",
    "KSResult",
    "TestResult",
    "chi2_contingency",
    "chi_square_gof",
    "evidently_binned_frequencies",
    "fill_zero_frequencies",
    "jensenshannon",
    "ks_2samp",
    "ks_pvalue",
    "ks_statistic_sorted",
    "psi",
    "value_counts",
    "wasserstein_distance",
    "wasserstein_distance_sorted",
    "wasserstein_normed",
    "z_test_binary",
    "z_test_proportions",
]

#: ``ks_2samp(method='auto')`` computes the exact p-value up to this sample size, else Smirnov's
#: asymptotic distribution (scipy's ``MAX_AUTO_N``).
KS_MAX_EXACT_N = 10_000

#: Evidently divides the Wasserstein distance by ``max(std(reference), 0.001)``.
MIN_NORM_STD = 0.001


@dataclass(frozen=True)
class KSResult:
    statistic: float
    pvalue: float


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float


def _as_float(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


# -- Kolmogorov-Smirnov ---------------------------------------------------------------------------


def ks_statistic_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided KS statistic ``sup |F_a - F_b|`` of two sorted, non-empty float arrays.

    Both empirical CDFs are right-continuous step functions, so the supremum is reached at a
    sample point; it is evaluated at every point of both samples with four ``searchsorted``
    calls (ties are handled by ``side='right'``).
    """
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise ValueError("KS needs two non-empty samples")
    d_at_a = np.searchsorted(a, a, side="right") / n1 - np.searchsorted(b, a, side="right") / n2
    d_at_b = np.searchsorted(a, b, side="right") / n1 - np.searchsorted(b, b, side="right") / n2
    return float(max(np.abs(d_at_a).max(), np.abs(d_at_b).max()))


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """Two-sided p-value of a two-sample KS statistic ``d`` for sample sizes ``n1``, ``n2``.

    Identical to ``scipy.stats.ks_2samp(..., method='auto')``: exact when ``max(n1, n2) <=
    10,000`` (falling back to the asymptotic form when the exact computation fails, as scipy does),
    else ``kstwo.sf(d, round(n1*n2/(n1+n2)))``.
    """
    n1, n2 = int(n1), int(n2)
    if n1 <= 0 or n2 <= 0:
        raise ValueError("KS needs two non-empty samples")
    if max(n1, n2) <= KS_MAX_EXACT_N and _scipy_ks_2samp_prob is not None:
        prob = _scipy_ks_2samp_prob(
            np.asarray(float(d)), np.int64(n1), np.int64(n2), "auto", KS_MAX_EXACT_N, "two-sided"
        )
        return float(prob)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(sps.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_2samp(reference: Any, current: Any) -> KSResult:
    """Two-sample, two-sided Kolmogorov–Smirnov test (same statistic and p-value as scipy)."""
    a = np.sort(_as_float(reference))
    b = np.sort(_as_float(current))
    d = ks_statistic_sorted(a, b)
    return KSResult(d, ks_pvalue(d, a.size, b.size))


# -- Wasserstein ----------------------------------------------------------------------------------


def wasserstein_distance_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance of two sorted, non-empty float arrays (equal weights).

    ``W = ∫_0^1 |U^-1(t) - V^-1(t)| dt``: the quantile functions are step functions that change
    only at ``t = i/n1`` and ``t = j/n2``. With ``L = lcm(n1, n2)`` those breakpoints are the
    integers ``i*L/n1`` and ``j*L/n2``; sorting them (integers, independent of the data) gives
    every interval and the order statistic of each sample on it. Equal sizes reduce to
    ``mean(|u_i - v_i|)``. This equals the CDF-difference integral ``∫|U(x) - V(x)| dx`` that
    ``scipy.stats.wasserstein_distance`` evaluates.
    """
    n1, n2 = u.size, v.size
    if n1 == 0 or n2 == 0:
        raise ValueError("Wasserstein needs two non-empty samples")
    if n1 == n2:
        return float(np.abs(u - v).mean())
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    if lcm > 2**62 // 2:  # pragma: no cover - astronomically large sizes: use the CDF integral
        return _wasserstein_cdf_integral(u, v)
    step_u, step_v = lcm // n1, lcm // n2
    breaks = np.concatenate(
        [
            np.arange(step_u, lcm + 1, step_u, dtype=np.int64),
            np.arange(step_v, lcm + 1, step_v, dtype=np.int64),
        ]
    )
    breaks.sort()
    widths = np.diff(breaks, prepend=0)
    iu = (breaks - 1) // step_u
    iv = (breaks - 1) // step_v
    return float(np.dot(np.abs(u[iu] - v[iv]), widths) / lcm)


def _wasserstein_cdf_integral(u: np.ndarray, v: np.ndarray) -> float:
    all_values = np.sort(np.concatenate([u, v]))
    deltas = np.diff(all_values)
    cu = np.searchsorted(u, all_values[:-1], side="right") / u.size
    cv = np.searchsorted(v, all_values[:-1], side="right") / v.size
    return float(np.dot(np.abs(cu - cv), deltas))


def wasserstein_distance(u: Any, v: Any) -> float:
    """First Wasserstein (earth mover's) distance of two samples (as ``scipy.stats``'s)."""
    return wasserstein_distance_sorted(np.sort(_as_float(u)), np.sort(_as_float(v)))


def wasserstein_normed(reference: Any, current: Any, min_std: float = MIN_NORM_STD) -> float:
    """Wasserstein distance divided by the reference's standard deviation (``ddof=0``).

    The divisor is floored at ``min_std`` (0.001, as Evidently does) so that a constant reference
    does not divide by zero.
    """
    ref = _as_float(reference)
    norm = max(float(np.std(ref)), min_std)
    return wasserstein_distance(ref, current) / norm


# -- frequency-vector statistics ------------------------------------------------------------------


def _frequencies(p: Any) -> np.ndarray:
    arr = _as_float(p)
    if arr.size == 0:
        raise ValueError("empty frequency vector")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("frequencies must be finite and non-negative")
    return arr


def jensenshannon(p: Any, q: Any, base: float | None = None) -> float:
    """Jensen–Shannon distance of two frequency (or count) vectors over the same bins.

    Both vectors are normalised to sum 1; the distance is ``sqrt((KL(p‖m) + KL(q‖m)) / 2)`` with
    ``m = (p + q)/2`` and natural logarithms unless ``base`` is given — the same as
    ``scipy.spatial.distance.jensenshannon``. Evidently compares it with 0.1.
    """
    pa, qa = _frequencies(p), _frequencies(q)
    if pa.shape != qa.shape:
        raise ValueError("frequency vectors must have the same length")
    pa = pa / pa.sum()
    qa = qa / qa.sum()
    m = (pa + qa) / 2.0
    js = (special.rel_entr(pa, m).sum() + special.rel_entr(qa, m).sum()) / 2.0
    if base is not None:
        js /= math.log(base)
    return float(math.sqrt(max(float(js), 0.0)))


def fill_zero_frequencies(p: np.ndarray) -> np.ndarray:
    """Replace zero shares the way Evidently does before PSI and KL.

    Zeros become ``min(nonzero) / 1e6`` when the smallest non-zero share is ≤ 1e-4, else 1e-4.
    """
    out = np.array(p, dtype=np.float64)
    nonzero = out[out != 0]
    if nonzero.size == 0:
        raise ValueError("frequency vector is all zeros")
    smallest = float(nonzero.min())
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def psi(reference_shares: Any, current_shares: Any) -> float:
    """Population stability index ``Σ (r - c) · ln(r / c)`` over the same bins.

    Inputs are shares (fractions of each sample per bin); empty bins are filled as in Evidently
    (:func:`fill_zero_frequencies`). Evidently compares it with 0.1.
    """
    r = fill_zero_frequencies(_frequencies(reference_shares))
    c = fill_zero_frequencies(_frequencies(current_shares))
    if r.shape != c.shape:
        raise ValueError("share vectors must have the same length")
    return float(np.sum((r - c) * np.log(r / c)))


def chi_square_gof(reference_counts: Any, current_counts: Any) -> TestResult:
    """Chi-square goodness of fit of the current counts to the reference's proportions.

    This is Evidently's categorical test: expected counts are the reference counts scaled to the
    current total (``ref * n_cur / n_ref``) over the union of categories, and the p-value is
    ``chi2.sf(stat, k - 1)`` (``scipy.stats.chisquare``). A category absent from the reference but
    present now gives an infinite statistic and ``p = 0``.
    """
    ref = _frequencies(reference_counts)
    cur = _frequencies(current_counts)
    if ref.shape != cur.shape:
        raise ValueError("count vectors must have the same length")
    expected = ref * (cur.sum() / ref.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (cur - expected) ** 2 / expected
    terms = np.where((cur == expected), 0.0, terms)
    stat = float(terms.sum())
    dof = ref.size - 1
    pvalue = float(sps.chi2.sf(stat, dof)) if dof > 0 else 1.0
    if math.isnan(pvalue):
        pvalue = 1.0
    return TestResult(stat, pvalue)


def chi2_contingency(table: Any, correction: bool = True) -> tuple[float, float, int]:
    """Pearson's chi-square test of independence on a contingency table.

    Returns ``(statistic, p-value, dof)``, the same as ``scipy.stats.chi2_contingency``
    (including Yates' continuity correction when ``dof == 1`` and ``correction`` is true). For drift
    the table is ``[reference_counts, current_counts]`` over the union of categories.
    """
    observed = np.asarray(table, dtype=np.float64)
    if observed.ndim != 2 or observed.size == 0:
        raise ValueError("contingency table must be a non-empty 2-D array")
    if np.any(observed < 0):
        raise ValueError("contingency table must not contain negative counts")
    total = observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    if np.any(expected == 0):
        raise ValueError("contingency table has a zero row or column sum")
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if dof == 0:
        return 0.0, 1.0, 0
    if dof == 1 and correction:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(((observed - expected) ** 2 / expected).sum())
    return stat, float(sps.chi2.sf(stat, dof)), int(dof)


def z_test_proportions(ones_ref: int, n_ref: int, ones_cur: int, n_cur: int) -> TestResult:
    """Two-proportion Z-test (pooled variance), two-sided.

    ``z = (p1 - p2) / sqrt(P (1 - P) (1/n1 + 1/n2))`` with the pooled share ``P``; the p-value is
    ``2 · (1 - Φ(|z|))``, Evidently's formula. When ``P`` is 0 or 1 (both samples constant and
    equal) ``z`` is 0 and ``p`` is 1.
    """
    if n_ref <= 0 or n_cur <= 0:
        raise ValueError("Z-test needs two non-empty samples")
    p1 = ones_ref / n_ref
    p2 = ones_cur / n_cur
    pooled = (ones_ref + ones_cur) / (n_ref + n_cur)
    denom = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_ref + 1.0 / n_cur))
    if denom == 0.0:
        return TestResult(0.0, 1.0)
    z = (p1 - p2) / denom
    return TestResult(float(z), float(2.0 * (1.0 - sps.norm.cdf(abs(z)))))


def z_test_binary(reference: Any, current: Any) -> TestResult:
    """Z-test for a feature with at most two values (Evidently's rule for binary features).

    The smallest value of the union (in sorted order) is the "0" class, every other value "1".
    If both samples hold one and the same value, ``p = 1``.
    """
    ref_vals, ref_counts = value_counts(reference)
    cur_vals, cur_counts = value_counts(current)
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        raise ValueError("Z-test needs two non-empty samples")
    if ref_vals.size == 1 and cur_vals.size == 1 and ref_vals[0] == cur_vals[0]:
        return TestResult(0.0, 1.0)
    first = sorted(set(ref_vals.tolist()) | set(cur_vals.tolist()))[0]
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    zeros_ref = int(ref_counts[ref_vals == first].sum())
    zeros_cur = int(cur_counts[cur_vals == first].sum())
    return z_test_proportions(n_ref - zeros_ref, n_ref, n_cur - zeros_cur, n_cur)


# -- counting and Evidently's binning -------------------------------------------------------------


def value_counts(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their counts (sorted by value when the values are orderable).

    Object arrays (Python strings, mixed with None removed) are counted by hashing
    (``collections.Counter``, C-level), which is an order of magnitude faster than sorting them.
    """
    arr = np.asarray(values)
    if arr.dtype.kind != "O":
        uniq, counts = np.unique(arr, return_counts=True)
        return uniq, counts.astype(np.int64)
    counter = Counter(arr.ravel().tolist())
    try:
        keys = sorted(counter)
    except TypeError:  # unorderable mix: first-seen order
        keys = list(counter)
    uniq = np.empty(len(keys), dtype=object)
    uniq[:] = keys
    counts = np.fromiter((counter[k] for k in keys), dtype=np.int64, count=len(keys))
    return uniq, counts


def aligned_counts(reference: Any, current: Any) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Counts of both samples over the union of their distinct values."""
    rv, rc = value_counts(reference)
    cv, cc = value_counts(current)
    keys = list(dict.fromkeys([*rv.tolist(), *cv.tolist()]))
    index = {k: i for i, k in enumerate(keys)}
    ref = np.zeros(len(keys), dtype=np.int64)
    cur = np.zeros(len(keys), dtype=np.int64)
    ref[[index[k] for k in rv.tolist()]] = rc
    cur[[index[k] for k in cv.tolist()]] = cc
    return keys, ref, cur


def evidently_binned_frequencies(
    reference: Any, current: Any, numeric: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin shares of both samples, binned as Evidently bins for Jensen–Shannon and PSI.

    A numeric feature whose reference has more than 20 distinct values is cut into
    ``numpy.histogram_bin_edges(reference ∪ current, bins='sturges')`` equal-width bins (so the
    bins depend on both samples and their sizes); anything else is counted per distinct value over
    the union of both samples' values. Shares are counts divided by the sample size.
    """
    ref = np.asarray(reference)
    cur = np.asarray(current)
    if numeric and np.unique(ref).size > 20:
        ref = ref.astype(np.float64)
        cur = cur.astype(np.float64)
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        return (
            np.histogram(ref, edges)[0] / ref.size,
            np.histogram(cur, edges)[0] / cur.size,
        )
    _, rc, cc = aligned_counts(ref, cur)
    return rc / ref.size, cc / cur.size


def counts_from_mapping(
    reference: dict[Any, int], current: dict[Any, int]
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Align two ``value -> count`` mappings over the union of their keys (zero counts dropped)."""
    keys = [k for k, c in reference.items() if c > 0]
    seen = set(keys)
    keys += [k for k, c in current.items() if c > 0 and k not in seen]
    ref = np.array([reference.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([current.get(k, 0) for k in keys], dtype=np.int64)
    return keys, ref, cur
