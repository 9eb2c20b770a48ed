"""Drift statistics computed from two profiles, with guaranteed error bounds.

Both profiles must share the reference's bin edges (a window profile is built from the reference,
see :func:`workers.drift.profile.window_profile`). Notation for one numeric feature: bins
``j = 0..k`` (bin 0 below ``e_0``, bin ``k`` above ``e_{k-1}``), reference masses ``f_j`` and
current masses ``g_j`` (counts over valid values), and at each bin boundary the cumulative masses
``F_j = Σ_{i<j} f_i`` and ``G_j = Σ_{i<j} g_i``. Because bin ``j`` is ``[e_{j-1}, e_j)`` (the
last interior bin closed) ``F_j`` is *exactly* the reference CDF just below the boundary.

* **KS** (:func:`ks_from_profiles`): ``D_b = max_j |F_j - G_j|`` is a lower bound of the true
  statistic (every ``F_j - G_j`` is a limit of ``F(x) - G(x)``). Inside bin ``j`` both CDFs stay
  between their boundary values, so ``|F(x) - G(x)| <= max(F_{j+1} - G_j, G_{j+1} - F_j)``; the
  maximum of this over the bins, ``D_hi``, is a guaranteed upper bound and
  ``D_hi <= D_b + max_j max(f_j, g_j)`` — the error is at most the largest bin mass of either
  distribution (about ``1/bins`` for the reference's quantile bins). Bins where one side has no
  mass (the outer bins of a reference) add no error. The estimate is ``D_b``; the p-value is
  computed from it as ``ks_2samp`` would, and bounded by the p-values of ``D_hi`` and ``D_b``.
* **Wasserstein** (:func:`wasserstein_from_profiles`): ``W = ∫|F - G| dx``. With the per-bin sums
  ``S_j`` the integral of each CDF over a bin ``[a, b)`` is exact:
  ``∫_a^b F dx = (C_j (b - a) + c_j b - S_j) / n`` (``C_j`` values below ``a``, ``c_j`` in the
  bin). So ``I_j = ∫_bin (F - G)`` is exact and ``Σ |I_j| <= W`` (lower bound). Inside bin ``j``
  ``h = F - G`` lies in ``[lo_j, hi_j] = [F_j - G_{j+1}, F_{j+1} - G_j]``; ``∫|h| - |∫h| =
  2 min(∫h⁺, ∫h⁻)`` is zero unless ``h`` changes sign inside the bin and is at most
  ``2 min(w_j hi_j⁺ - I_j⁺, w_j lo_j⁻ - I_j⁻)`` otherwise (``x⁺ = max(x, 0)``,
  ``x⁻ = max(-x, 0)``, ``w_j`` the bin width), which gives the upper bound. In the worst case
  that is ``Σ_j 2 w_j max(f_j, g_j)`` over the bins where the CDFs may cross; in practice only
  the few bins around crossings contribute. The estimate is ``|I_j|`` where ``h`` has one sign at
  both bin boundaries and in ``I_j``; elsewhere ``h`` is taken linear between its boundary
  values, shifted to the exact ``I_j``, and clamped into the bounds. The outer bins run from the
  smaller of both minimums and to the larger of both maximums.
  Normalising by ``max(std_ref, 0.001)`` uses the reference's exact moments.
* **Jensen–Shannon and PSI** are exact on the profile's frequency vectors: per category for
  categorical features (plus the ``other`` bucket as one more category when a profile overflowed
  ``max_values``), per distinct value for numeric features whose values are tracked on both
  sides and whose reference has at most 20 distinct values (Evidently's own binning then), and
  on the reference quantile bins otherwise. The last differs from Evidently, which bins
  continuous features into Sturges equal-width bins over both samples; that binning needs the raw
  data.
* **Chi-square and Z-test** are exact on the value counts (categorical features, or numeric
  features with their distinct values tracked). With an ``other`` bucket they treat it as one
  category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import stats
from .profile import CATEGORICAL, FeatureProfile

__all__ = [
    "Approx",
    "frequency_vectors",
    "js_from_profiles",
    "ks_from_profiles",
    "psi_from_profiles",
    "union_unique",
    "value_count_vectors",
    "wasserstein_from_profiles",
]


@dataclass(frozen=True)
class Approx:
    """An estimate with guaranteed bounds: ``low <= true value <= high``."""

    value: float
    low: float
    high: float


def _check_pair(ref: FeatureProfile, cur: FeatureProfile) -> None:
    if ref.kind != cur.kind:
        raise ValueError(f"feature {ref.name!r}: {ref.kind} reference vs {cur.kind} window")
    if ref.numeric and not np.array_equal(ref.edges, cur.edges):
        raise ValueError(f"feature {ref.name!r}: window was not built on this reference's edges")
    if ref.n == 0:
        raise ValueError(f"feature {ref.name!r}: the reference has no valid values")
    if cur.n == 0:
        raise ValueError(f"feature {ref.name!r}: the window has no valid values")


def _cumulative(fp: FeatureProfile) -> np.ndarray:
    """``F_j`` for ``j = 0..k+1``: the mass of bins ``< j``."""
    return np.concatenate([[0.0], np.cumsum(fp.bin_counts) / fp.n])


# -- KS -------------------------------------------------------------------------------------------


def ks_from_profiles(ref: FeatureProfile, cur: FeatureProfile) -> tuple[Approx, Approx]:
    """KS statistic (bounds ``D_b <= D <= D_hi``) and its p-value, from two numeric profiles."""
    _check_pair(ref, cur)
    big_f, big_g = _cumulative(ref), _cumulative(cur)
    d_b = float(np.abs(big_f - big_g).max())
    inside = np.maximum(big_f[1:] - big_g[:-1], big_g[1:] - big_f[:-1])
    d_hi = max(d_b, float(inside.max()))
    p = stats.ks_pvalue(d_b, ref.n, cur.n)
    p_low = stats.ks_pvalue(d_hi, ref.n, cur.n)
    return Approx(d_b, d_b, d_hi), Approx(p, p_low, p)


# -- Wasserstein ----------------------------------------------------------------------------------


def _abs_linear_integral(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``∫_0^1 |p + (q - p) t| dt`` elementwise."""
    same_sign = p * q >= 0
    denom = np.abs(p) + np.abs(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = (p * p + q * q) / (2.0 * denom)
    return np.where(same_sign, np.abs(p + q) / 2.0, crossing)


def wasserstein_from_profiles(ref: FeatureProfile, cur: FeatureProfile) -> Approx:
    """First Wasserstein distance (not normalised) from two numeric profiles, with bounds."""
    _check_pair(ref, cur)
    edges = ref.edges
    lo_all = min(ref.min, cur.min)  # type: ignore[type-var]
    hi_all = max(ref.max, cur.max)  # type: ignore[type-var]
    a = np.concatenate([[min(lo_all, edges[0])], edges])
    b = np.concatenate([edges, [max(hi_all, edges[-1])]])
    w = b - a

    def integral(fp: FeatureProfile) -> tuple[np.ndarray, np.ndarray]:
        cum = np.concatenate([[0.0], np.cumsum(fp.bin_counts)])  # values below each bin
        integ = (cum[:-1] * w + fp.bin_counts * b - fp.bin_sums) / fp.n
        return integ, cum / fp.n

    i_f, big_f = integral(ref)
    i_g, big_g = integral(cur)
    inner = i_f - i_g
    hi = big_f[1:] - big_g[:-1]
    lo = big_f[:-1] - big_g[1:]
    lower = np.abs(inner)
    pos_cap = np.maximum(hi, 0.0) * w  # ∫h⁺ <= pos_cap
    neg_cap = np.maximum(-lo, 0.0) * w  # ∫h⁻ <= neg_cap
    slack = 2.0 * np.minimum(pos_cap - np.maximum(inner, 0.0), neg_cap + np.minimum(inner, 0.0))
    upper = lower + np.maximum(slack, 0.0)
    h_a = big_f[:-1] - big_g[:-1]
    h_b = big_f[1:] - big_g[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(w > 0, inner / w - (h_a + h_b) / 2.0, 0.0)
    linear = w * _abs_linear_integral(h_a + shift, h_b + shift)
    # no sign change at the bin's boundaries nor in its integral: assume none inside
    one_sign = ((h_a >= 0) & (h_b >= 0) & (inner >= 0)) | ((h_a <= 0) & (h_b <= 0) & (inner <= 0))
    estimate = np.where(one_sign, lower, np.nan_to_num(linear))
    estimate = np.clip(estimate, lower, upper)
    return Approx(float(estimate.sum()), float(lower.sum()), float(upper.sum()))


def wasserstein_normed_from_profiles(
    ref: FeatureProfile, cur: FeatureProfile, min_std: float = stats.MIN_NORM_STD
) -> Approx:
    """Wasserstein distance over ``max(std_ref, 0.001)`` (Evidently's normalisation)."""
    raw = wasserstein_from_profiles(ref, cur)
    norm = max(ref.std, min_std)
    return Approx(raw.value / norm, raw.low / norm, raw.high / norm)


# -- frequency vectors ----------------------------------------------------------------------------


def union_unique(ref: FeatureProfile, cur: FeatureProfile) -> int | None:
    """Distinct valid values in reference ∪ current, or ``None`` when more than tracked."""
    if ref.n_unique is None or cur.n_unique is None:
        return None
    keys = {k for k, c in ref.values.items() if c > 0}
    keys.update(k for k, c in cur.values.items() if c > 0)
    return len(keys)


def value_count_vectors(
    ref: FeatureProfile, cur: FeatureProfile
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Counts over the union of values; ``exact`` is false when an ``other`` bucket was used."""
    _check_pair(ref, cur)
    if ref.kind != CATEGORICAL and (ref.values_overflow or cur.values_overflow):
        raise ValueError(
            f"feature {ref.name!r}: more than {min(ref.max_values, cur.max_values)} distinct "
            "values, so value counts were not kept (use a binned method)"
        )
    _, rc, cc = stats.counts_from_mapping(ref.values, cur.values)
    exact = not (ref.other or cur.other)
    if not exact:
        rc = np.append(rc, ref.other)
        cc = np.append(cc, cur.other)
    return rc, cc, exact


def frequency_vectors(
    ref: FeatureProfile, cur: FeatureProfile
) -> tuple[np.ndarray, np.ndarray, str]:
    """Counts over the bins that Jensen–Shannon and PSI use, and which binning that was.

    ``values`` (per distinct value — Evidently's binning), ``values+other`` (categories with
    the overflow bucket) or ``quantile-bins`` (the reference's histogram bins).
    """
    _check_pair(ref, cur)
    if ref.kind == CATEGORICAL:
        rc, cc, exact = value_count_vectors(ref, cur)
        return rc, cc, "values" if exact else "values+other"
    if (
        not ref.values_overflow
        and not cur.values_overflow
        and ref.n_unique is not None
        and ref.n_unique <= 20
    ):
        rc, cc, _ = value_count_vectors(ref, cur)
        return rc, cc, "values"
    keep = (ref.bin_counts > 0) | (cur.bin_counts > 0)
    return ref.bin_counts[keep], cur.bin_counts[keep], "quantile-bins"


def js_from_profiles(ref: FeatureProfile, cur: FeatureProfile) -> tuple[float, str]:
    rc, cc, binning = frequency_vectors(ref, cur)
    return stats.jensenshannon(rc, cc), binning


def psi_from_profiles(ref: FeatureProfile, cur: FeatureProfile) -> tuple[float, str]:
    rc, cc, binning = frequency_vectors(ref, cur)
    return stats.psi(rc / ref.n, cc / cur.n), binning
