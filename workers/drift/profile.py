"""Mergeable feature profiles: what a serving fleet sends instead of raw rows.

A **reference profile** is computed once from the training (or baseline) data. It fixes, per
feature, the histogram bin edges (reference quantiles) and, for categorical features, the known
categories. A **window profile** starts empty with the same edges and categories
(:func:`window_profile`); batches are added with :func:`fold` and profiles computed in different
places are combined with :func:`merge`. Counts, histograms and moments merge exactly
(``merge(fold(w, x), fold(w', y))`` equals ``fold(w, x + y)`` up to float rounding of sums); the
bounded uniform sample merges as a uniform sample of the union.

Per feature a profile holds:

* ``count`` rows seen, ``nulls`` (None / NaN) and, for numeric features, ``infinite`` (±inf);
  null and infinite values take no further part, as in Evidently's drift code.
* ``n``, ``mean``, ``m2``: Welford/Chan moments of the valid values (variance ``m2 / n``),
  ``min`` and ``max``.
* a histogram: ``edges`` ``e_0 < … < e_{k-1}`` and ``k + 1`` bins — bin 0 is ``x < e_0``
  (below the reference range), bin ``i`` is ``e_{i-1} <= x < e_i``, the last interior bin is
  closed (``e_{k-2} <= x <= e_{k-1}``, as ``numpy.histogram``'s last bin) and bin ``k`` is
  ``x > e_{k-1}`` (above the reference range). ``bin_counts`` and ``bin_sums`` (the sum of the
  values in each bin, which makes the Wasserstein approximation's integrals exact per bin).
  The edges are the reference's distinct values when it has at most ``bins`` of them, else its
  quantiles at ``i / bins`` (linear interpolation, numpy's default), deduplicated.
* ``values``: a frequency table. Categorical: value → count for up to ``max_values`` categories,
  further categories are counted in ``other``. Numeric: the distinct values and their counts
  while there are at most ``max_values`` of them; past that the table is dropped and
  ``values_overflow`` set (Evidently's rules only need to know "more than 5 distinct values").
* ``sample``: a uniform reservoir sample of the valid values (``sample_size``, default 1,000;
  0 turns it off for the smallest payloads).

Everything serialises to plain JSON types (:meth:`DatasetProfile.to_dict`) and is validated on
the way back in (:meth:`DatasetProfile.from_dict`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "SCHEMA_VERSION",
    "DatasetProfile",
    "FeatureProfile",
    "Reservoir",
    "build_reference_profile",
    "fold",
    "infer_kind",
    "merge",
    "read_csv_columns",
    "read_parquet_columns",
    "window_profile",
]

SCHEMA_VERSION = 1
NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)

DEFAULT_BINS = 100
DEFAULT_MAX_VALUES = 1000
#: Evidently's small-reference regime is <= 1,000 rows: such a reference fits whole in the sample.
DEFAULT_SAMPLE_SIZE = 1000

#: Batches are sorted in blocks of this many values (the block size numpy.histogram uses).
BLOCK = 65_536

#: numpy's hypergeometric sampler needs both population sizes below this.
_HYPERGEOMETRIC_LIMIT = 1_000_000_000

RngLike = np.random.Generator | int | None


def _rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


# -- reservoir ------------------------------------------------------------------------------------


def _merge_samples(
    a: np.ndarray, seen_a: int, b: np.ndarray, seen_b: int, capacity: int, rng: np.random.Generator
) -> np.ndarray:
    """Uniform sample of the union of two populations from uniform samples of each.

    ``a`` is a uniform sample of ``min(capacity, seen_a)`` of ``seen_a`` items (likewise ``b``).
    The merged sample has ``k = min(capacity, seen_a + seen_b)`` items; the number taken from
    ``a`` is hypergeometric (``k`` draws without replacement from ``seen_a`` + ``seen_b``), then
    that many are drawn uniformly from ``a`` and the rest from ``b``. Given how many come from each
    side a uniform subset of the union is a uniform subset of each side, so the result is uniform.
    (Both samples are large enough: a side holding fewer than ``capacity`` items holds all of
    them.) Above a billion items per side numpy's hypergeometric sampler stops; the binomial with
    the same mean is then used, which differs only by a finite-population correction of order
    ``capacity / seen``.
    """
    k = min(capacity, seen_a + seen_b)
    if k == 0:
        return a[:0]
    if seen_a == 0:
        take_a = 0
    elif seen_b == 0:
        take_a = k
    elif seen_a < _HYPERGEOMETRIC_LIMIT and seen_b < _HYPERGEOMETRIC_LIMIT:
        take_a = int(rng.hypergeometric(seen_a, seen_b, k))
    else:
        take_a = int(rng.binomial(k, seen_a / (seen_a + seen_b)))
    take_a = min(max(take_a, k - b.size), a.size, k)
    pick_a = a[rng.choice(a.size, take_a, replace=False)] if take_a else a[:0]
    pick_b = b[rng.choice(b.size, k - take_a, replace=False)] if k - take_a else b[:0]
    return np.concatenate([pick_a, pick_b])


@dataclass(eq=False)
class Reservoir:
    """Bounded uniform sample: ``values`` is a uniform sample of ``min(capacity, seen)`` items."""

    capacity: int
    seen: int = 0
    values: np.ndarray = field(default_factory=lambda: np.empty(0))

    def offer(self, batch: np.ndarray, rng: np.random.Generator) -> None:
        """Add a whole batch (already cleaned of nulls): O(capacity), not O(len(batch))."""
        if batch.size == 0:
            return
        take = min(self.capacity, batch.size)
        sub = batch[rng.choice(batch.size, take, replace=False)] if take < batch.size else batch
        self.values = _merge_samples(
            self.values, self.seen, np.asarray(sub), batch.size, self.capacity, rng
        )
        self.seen += batch.size

    def merged(self, other: Reservoir, rng: np.random.Generator) -> Reservoir:
        capacity = min(self.capacity, other.capacity)
        mine, theirs = self.values, other.values
        if mine.size > capacity:  # different capacities: shrink uniformly first
            mine = mine[rng.choice(mine.size, capacity, replace=False)]
        if theirs.size > capacity:
            theirs = theirs[rng.choice(theirs.size, capacity, replace=False)]
        values = _merge_samples(mine, self.seen, theirs, other.seen, capacity, rng)
        return Reservoir(capacity, self.seen + other.seen, values)


# -- feature profile ------------------------------------------------------------------------------


def _empty_float() -> np.ndarray:
    return np.empty(0, dtype=np.float64)


def _empty_int() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass(eq=False)
class FeatureProfile:
    """Profile of one feature (see the module docstring for the meaning of each field)."""

    name: str
    kind: str
    count: int = 0
    nulls: int = 0
    infinite: int = 0
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float | None = None
    max: float | None = None
    edges: np.ndarray = field(default_factory=_empty_float)
    bin_counts: np.ndarray = field(default_factory=_empty_int)
    bin_sums: np.ndarray = field(default_factory=_empty_float)
    values: dict[Any, int] = field(default_factory=dict)
    other: int = 0
    values_overflow: bool = False
    max_values: int = DEFAULT_MAX_VALUES
    sample: Reservoir = field(default_factory=lambda: Reservoir(DEFAULT_SAMPLE_SIZE))

    # -- derived ----------------------------------------------------------------------------------

    @property
    def numeric(self) -> bool:
        return self.kind == NUMERIC

    @property
    def variance(self) -> float:
        """Population variance (``ddof=0``) of the valid values."""
        return self.m2 / self.n if self.n else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    @property
    def null_rate(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    @property
    def n_unique(self) -> int | None:
        """Distinct valid values seen, or ``None`` when past ``max_values`` (not tracked)."""
        if self.values_overflow or self.other:
            return None
        return sum(1 for c in self.values.values() if c > 0)

    @property
    def out_of_range(self) -> int:
        """Valid values outside the reference range ``[e_0, e_{k-1}]`` (numeric)."""
        if not self.numeric or self.bin_counts.size == 0:
            return 0
        return int(self.bin_counts[0] + self.bin_counts[-1])

    def empty_like(self) -> FeatureProfile:
        """An empty window profile with this profile's edges, categories and capacities."""
        seeded = {k: 0 for k in self.values} if self.kind == CATEGORICAL else {}
        return FeatureProfile(
            name=self.name,
            kind=self.kind,
            edges=self.edges.copy(),
            bin_counts=np.zeros_like(self.bin_counts),
            bin_sums=np.zeros_like(self.bin_sums),
            values=seeded,
            max_values=self.max_values,
            sample=Reservoir(self.sample.capacity, 0, self.sample.values[:0].copy()),
        )

    # -- JSON -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "count": int(self.count),
            "nulls": int(self.nulls),
            "n": int(self.n),
            "values": [[_json_scalar(k), int(c)] for k, c in self.values.items()],
            "other": int(self.other),
            "values_overflow": bool(self.values_overflow),
            "max_values": int(self.max_values),
            "sample": {
                "capacity": int(self.sample.capacity),
                "seen": int(self.sample.seen),
                "values": _json_list(self.sample.values),
            },
        }
        if self.numeric:
            data.update(
                infinite=int(self.infinite),
                mean=float(self.mean),
                m2=float(self.m2),
                min=None if self.min is None else float(self.min),
                max=None if self.max is None else float(self.max),
                edges=self.edges.tolist(),
                bin_counts=self.bin_counts.tolist(),
                bin_sums=self.bin_sums.tolist(),
            )
        return data

    @classmethod
    def from_dict(cls, name: str, data: Any, path: str | None = None) -> FeatureProfile:
        return _feature_from_dict(name, data, path or f"features.{name}")


def _json_list(values: np.ndarray) -> list[Any]:
    """``[_json_scalar(v) for v in values]``, without a call per value for numbers (a
    window's sample holds up to a thousand; the fold writes it on every fold)."""
    if values.dtype.kind in "iub":
        return values.tolist()
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0].item()
            raise ValueError(f"non-finite value {bad!r} cannot be serialised")
        return values.tolist()
    return [_json_scalar(v) for v in values.tolist()]


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite value {value!r} cannot be serialised")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


# -- input conversion -----------------------------------------------------------------------------


def infer_kind(values: Any) -> str:
    """``numeric`` for numbers (also with None), ``categorical`` for strings and booleans."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values)
    kind = arr.dtype.kind
    if kind in "iuf":
        return NUMERIC
    if kind in "bUS":
        return CATEGORICAL
    if kind == "O":
        types = set(map(type, arr.ravel().tolist()))
        types.discard(type(None))
        if types and all(issubclass(t, int | float) and not issubclass(t, bool) for t in types):
            return NUMERIC
        return CATEGORICAL
    raise ValueError(f"unsupported dtype {arr.dtype} (numbers, strings or booleans expected)")


def _to_float(values: Any, name: str) -> np.ndarray:
    arr = values if isinstance(values, np.ndarray) else np.asarray(values)
    if arr.dtype == np.float64:
        return arr.ravel()
    try:
        return arr.astype(np.float64).ravel()  # None -> NaN for object arrays
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature {name!r} is numeric but holds non-numeric values") from exc


def _null_mask(arr: np.ndarray) -> np.ndarray | None:
    """None / NaN mask of a categorical array, or None when it cannot hold nulls."""
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype.kind != "O":
        return None
    mask = np.equal(arr, None)
    mask |= arr != arr  # NaN is the only value unequal to itself
    return mask


# -- folding --------------------------------------------------------------------------------------


def _search_edges(edges: np.ndarray) -> np.ndarray:
    """Edges for ``searchsorted(side='left')``: counts ``x < e_i``, and ``x <= e`` for the last."""
    search = edges.copy()
    if search.size:
        search[-1] = np.nextafter(search[-1], np.inf)
    return search


class _NumericAccumulator:
    """Per-fold partial results for one numeric feature, fed with sorted blocks."""

    def __init__(self, fp: FeatureProfile) -> None:
        self.search = _search_edges(fp.edges)
        nb = fp.edges.size + 1
        self.counts = np.zeros(nb, dtype=np.int64)
        self.sums = np.zeros(nb, dtype=np.float64)
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.lo = math.inf
        self.hi = -math.inf
        self.nulls = 0
        self.infinite = 0
        self.track = not fp.values_overflow
        self.max_values = fp.max_values
        self.uniq: list[tuple[np.ndarray, np.ndarray]] = []

    def add_sorted(self, block: np.ndarray) -> None:
        """Add a sorted block (NaN last, as numpy sorts them)."""
        lo = int(np.searchsorted(block, -np.inf, side="right"))
        hi = int(np.searchsorted(block, np.inf, side="left"))
        nan_at = int(np.searchsorted(block, np.nan, side="left"))
        self.nulls += block.size - nan_at
        self.infinite += lo + (nan_at - hi)
        valid = block[lo:hi]
        m = valid.size
        if m == 0:
            return
        bounds = np.empty(self.search.size + 2, dtype=np.int64)
        bounds[0] = 0
        bounds[1:-1] = np.searchsorted(valid, self.search, side="left")
        bounds[-1] = m
        counts = np.diff(bounds)
        nonempty = counts > 0
        sums = np.zeros(counts.size, dtype=np.float64)
        # consecutive non-empty bins' starts delimit exactly their elements
        sums[nonempty] = np.add.reduceat(valid, bounds[:-1][nonempty])
        self.counts += counts
        self.sums += sums
        bmean = float(sums.sum()) / m
        dev = valid - bmean
        bm2 = float(np.dot(dev, dev))
        self._combine(m, bmean, bm2)
        self.lo = min(self.lo, float(valid[0]))
        self.hi = max(self.hi, float(valid[-1]))
        if self.track:
            cut = np.flatnonzero(valid[1:] != valid[:-1]) + 1
            if cut.size >= self.max_values:
                self.track = False
                self.uniq = []
            else:
                starts = np.concatenate([[0], cut])
                self.uniq.append((valid[starts], np.diff(np.append(starts, m))))

    def _combine(self, nb: int, mean_b: float, m2_b: float) -> None:
        na = self.n
        n = na + nb
        delta = mean_b - self.mean
        self.mean += delta * nb / n
        self.m2 += m2_b + delta * delta * na * nb / n
        self.n = n

    def apply(self, fp: FeatureProfile) -> None:
        fp.nulls += self.nulls
        fp.infinite += self.infinite
        fp.bin_counts = fp.bin_counts + self.counts
        fp.bin_sums = fp.bin_sums + self.sums
        if self.n:
            fp.n, fp.mean, fp.m2 = _chan(fp.n, fp.mean, fp.m2, self.n, self.mean, self.m2)
            fp.min = self.lo if fp.min is None else min(fp.min, self.lo)
            fp.max = self.hi if fp.max is None else max(fp.max, self.hi)
        if not self.track:
            fp.values_overflow = True
            fp.values = {}
        elif self.uniq:
            keys = np.concatenate(
                [np.fromiter(fp.values.keys(), np.float64, len(fp.values))]
                + [u for u, _ in self.uniq]
            )
            cnts = np.concatenate(
                [np.fromiter(fp.values.values(), np.int64, len(fp.values))]
                + [c for _, c in self.uniq]
            )
            uniq, inverse = np.unique(keys, return_inverse=True)
            if uniq.size > fp.max_values:
                fp.values_overflow = True
                fp.values = {}
            else:
                totals = np.bincount(inverse, weights=cnts, minlength=uniq.size)
                fp.values = dict(zip(uniq.tolist(), totals.astype(np.int64).tolist(), strict=True))


def _chan(
    na: int, ma: float, m2a: float, nb: int, mb: float, m2b: float
) -> tuple[int, float, float]:
    """Chan et al.'s pairwise combination of (count, mean, M2)."""
    n = na + nb
    if n == 0:
        return 0, 0.0, 0.0
    if na == 0:
        return nb, mb, m2b
    if nb == 0:
        return na, ma, m2a
    delta = mb - ma
    return n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n


def _fold_numeric(fp: FeatureProfile, values: Any, rng: np.random.Generator) -> None:
    v = _to_float(values, fp.name)
    acc = _NumericAccumulator(fp)
    for start in range(0, v.size, BLOCK):
        acc.add_sorted(np.sort(v[start : start + BLOCK]))
    acc.apply(fp)
    fp.count += v.size
    _offer_valid(fp, v, acc.nulls + acc.infinite, rng)


def _offer_valid(fp: FeatureProfile, v: np.ndarray, n_bad: int, rng: np.random.Generator) -> None:
    if n_bad:
        v = v[np.isfinite(v)]
    fp.sample.offer(v, rng)


def _fold_categorical(fp: FeatureProfile, values: Any, rng: np.random.Generator) -> None:
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    arr = arr.ravel()
    fp.count += arr.size
    mask = _null_mask(arr)
    if mask is not None and mask.any():
        fp.nulls += int(mask.sum())
        arr = arr[~mask]
    if arr.size == 0:
        return
    from .stats import value_counts

    uniq, counts = value_counts(arr)
    _add_categories(fp, uniq.tolist(), counts.tolist())
    fp.n += arr.size
    fp.sample.offer(arr, rng)
    if fp.sample.values.dtype != object:
        fp.sample.values = fp.sample.values.astype(object)


def _add_categories(fp: FeatureProfile, keys: list[Any], counts: list[int]) -> None:
    """Add counts; new categories are admitted (most frequent first) until ``max_values``."""
    table = fp.values
    new: list[tuple[int, Any]] = []
    for key, c in zip(keys, counts, strict=True):
        if key in table:
            table[key] += int(c)
        else:
            new.append((int(c), key))
    new.sort(key=lambda kc: -kc[0])  # stable: equal counts keep the sorted value order
    for c, key in new:
        if len(table) < fp.max_values:
            table[key] = c
        else:
            fp.other += c
            fp.values_overflow = True


def _fold_feature(fp: FeatureProfile, values: Any, rng: np.random.Generator) -> None:
    if fp.kind == NUMERIC:
        _fold_numeric(fp, values, rng)
    else:
        _fold_categorical(fp, values, rng)


# -- dataset profile ------------------------------------------------------------------------------


@dataclass(eq=False)
class DatasetProfile:
    """Profiles of every feature of one dataset (a reference, or a window of live traffic)."""

    features: dict[str, FeatureProfile]
    rows: int = 0

    def __getitem__(self, name: str) -> FeatureProfile:
        return self.features[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "rows": int(self.rows),
            "features": {name: fp.to_dict() for name, fp in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> DatasetProfile:
        """Rebuild and validate a profile; a bad document raises ``ValueError`` naming the field."""
        if not isinstance(data, Mapping):
            raise ValueError("profile: expected an object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"schema_version: expected {SCHEMA_VERSION}, got {version!r}")
        rows = _get_int(data, "rows", "rows")
        features = data.get("features")
        if not isinstance(features, Mapping):
            raise ValueError("features: expected an object of feature name -> profile")
        out = {}
        for name, fdata in features.items():
            if not isinstance(name, str) or not name:
                raise ValueError("features: feature names must be non-empty strings")
            fp = _feature_from_dict(name, fdata, f"features.{name}")
            if fp.count != rows:
                raise ValueError(f"features.{name}.count: {fp.count} differs from rows ({rows})")
            out[name] = fp
        return cls(out, rows)


def _columns_length(columns: Mapping[str, Any]) -> int:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    return next(iter(lengths.values()), 0)


def _reference_edges(sorted_valid: np.ndarray, bins: int) -> np.ndarray:
    if sorted_valid.size == 0:
        return _empty_float()
    cut = np.flatnonzero(sorted_valid[1:] != sorted_valid[:-1]) + 1
    if cut.size + 1 <= bins:
        edges = sorted_valid[np.concatenate([[0], cut])]
    else:
        pos = np.linspace(0.0, 1.0, bins + 1) * (sorted_valid.size - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, sorted_valid.size - 1)
        frac = pos - low
        a, b = sorted_valid[low], sorted_valid[high]
        edges = np.unique(a + (b - a) * frac)  # levels 0 and 1 give the min and the max
    if edges.size == 1:  # a constant: give it a closed bin [c, c+ulp] of its own
        edges = np.array([edges[0], np.nextafter(edges[0], np.inf)])
    return edges.astype(np.float64)


def build_reference_profile(
    columns: Mapping[str, Any],
    kinds: Mapping[str, str] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    max_values: int = DEFAULT_MAX_VALUES,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    rng: RngLike = None,
) -> DatasetProfile:
    """Profile raw reference columns (``name -> array-like``, all the same length).

    ``kinds`` overrides the inferred kind of a feature (``"numeric"`` / ``"categorical"``);
    numbers are numeric, strings and booleans categorical unless told otherwise. ``bins`` is the
    number of quantile bins, ``max_values`` the cap on tracked distinct values / categories and
    ``sample_size`` the reservoir capacity.
    """
    if bins < 1 or max_values < 1 or sample_size < 0:
        raise ValueError("bins and max_values must be positive, sample_size not negative")
    kinds = dict(kinds or {})
    unknown = set(kinds) - set(columns)
    if unknown:
        raise ValueError(f"kinds names unknown columns: {sorted(unknown)}")
    rows = _columns_length(columns)
    gen = _rng(rng)
    features = {}
    for name, values in columns.items():
        kind = kinds.get(name) or infer_kind(values)
        if kind not in KINDS:
            raise ValueError(f"kinds[{name!r}]: expected one of {KINDS}, got {kind!r}")
        if kind == NUMERIC:
            v = _to_float(values, name)
            s = np.sort(v)
            fp = FeatureProfile(name, NUMERIC, max_values=max_values, sample=Reservoir(sample_size))
            lo = int(np.searchsorted(s, -np.inf, side="right"))
            hi = int(np.searchsorted(s, np.inf, side="left"))
            fp.edges = _reference_edges(s[lo:hi], bins)
            fp.bin_counts = np.zeros(fp.edges.size + 1, dtype=np.int64)
            fp.bin_sums = np.zeros(fp.edges.size + 1, dtype=np.float64)
            acc = _NumericAccumulator(fp)
            acc.add_sorted(s)
            acc.apply(fp)
            fp.count = v.size
            _offer_valid(fp, v, acc.nulls + acc.infinite, gen)
        else:
            fp = FeatureProfile(
                name, CATEGORICAL, max_values=max_values, sample=Reservoir(sample_size)
            )
            fp.sample.values = np.empty(0, dtype=object)
            _fold_categorical(fp, values, gen)
        features[name] = fp
    return DatasetProfile(features, rows)


def window_profile(reference: DatasetProfile, sample_size: int | None = None) -> DatasetProfile:
    """An empty window profile with the reference's bin edges and categories.

    ``sample_size`` overrides the reservoir capacity (default: the reference's; 0 for none).
    """
    if sample_size is not None and sample_size < 0:
        raise ValueError("sample_size must not be negative")
    features = {}
    for name, fp in reference.features.items():
        window = fp.empty_like()
        if sample_size is not None:
            window.sample = Reservoir(sample_size, 0, window.sample.values[:0])
        features[name] = window
    return DatasetProfile(features, 0)


def fold(window: DatasetProfile, batch: Mapping[str, Any], rng: RngLike = None) -> DatasetProfile:
    """Add a batch of raw rows (``name -> array-like``) to ``window`` in place and return it.

    The batch must hold exactly the profile's features. Numeric values are sorted in blocks of
    65,536 and binned with ``searchsorted`` on the sorted block (no per-value Python work).
    """
    missing = set(window.features) - set(batch)
    extra = set(batch) - set(window.features)
    if missing or extra:
        raise ValueError(
            f"batch columns differ from the profile: missing {sorted(missing)}, "
            f"unknown {sorted(extra)}"
        )
    rows = _columns_length(batch)
    gen = _rng(rng)
    for name, fp in window.features.items():
        _fold_feature(fp, batch[name], gen)
    window.rows += rows
    return window


def _merge_feature(
    a: FeatureProfile, b: FeatureProfile, rng: np.random.Generator
) -> FeatureProfile:
    if a.kind != b.kind:
        raise ValueError(f"feature {a.name!r}: cannot merge {a.kind} with {b.kind}")
    if a.numeric and not np.array_equal(a.edges, b.edges):
        raise ValueError(f"feature {a.name!r}: profiles have different bin edges")
    out = a.empty_like()
    out.max_values = min(a.max_values, b.max_values)
    out.count = a.count + b.count
    out.nulls = a.nulls + b.nulls
    out.infinite = a.infinite + b.infinite
    out.n, out.mean, out.m2 = _chan(a.n, a.mean, a.m2, b.n, b.mean, b.m2)
    mins = [x for x in (a.min, b.min) if x is not None]
    maxs = [x for x in (a.max, b.max) if x is not None]
    out.min = min(mins) if mins else None
    out.max = max(maxs) if maxs else None
    if a.numeric:
        out.bin_counts = a.bin_counts + b.bin_counts
        out.bin_sums = a.bin_sums + b.bin_sums
        if a.values_overflow or b.values_overflow:
            out.values_overflow, out.values = True, {}
        else:
            table = dict(a.values)
            for k, c in b.values.items():
                table[k] = table.get(k, 0) + c
            if len(table) > out.max_values:
                out.values_overflow, out.values = True, {}
            else:
                out.values = dict(sorted(table.items()))
    else:
        out.values = dict(a.values)
        out.other = a.other
        out.values_overflow = a.values_overflow or b.values_overflow
        if len(out.values) > out.max_values:
            raise ValueError(f"feature {a.name!r}: more categories than max_values")
        _add_categories(out, list(b.values.keys()), list(b.values.values()))
        out.other += b.other
    out.sample = a.sample.merged(b.sample, rng)
    return out


def merge(a: DatasetProfile, b: DatasetProfile, rng: RngLike = None) -> DatasetProfile:
    """Combine two profiles built on the same reference (returns a new profile)."""
    if set(a.features) != set(b.features):
        raise ValueError(
            f"profiles have different features: {sorted(set(a.features) ^ set(b.features))}"
        )
    gen = _rng(rng)
    merged = {name: _merge_feature(fp, b.features[name], gen) for name, fp in a.features.items()}
    return DatasetProfile(merged, a.rows + b.rows)


# -- file readers ---------------------------------------------------------------------------------


def _arrow_column_to_numpy(column: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return column.cast(pa.float64()).to_numpy()  # nulls -> NaN
    if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        arr = column.to_numpy(zero_copy_only=False)
        return arr if column.null_count == 0 or arr.dtype == object else arr.astype(object)
    raise ValueError(f"column {name!r}: unsupported Arrow type {t}")


def _table_to_columns(table: Any) -> dict[str, np.ndarray]:
    return {name: _arrow_column_to_numpy(table.column(name), name) for name in table.column_names}


def read_parquet_columns(
    path: str | os.PathLike[str], columns: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Read a Parquet file into ``name -> numpy array`` (numbers as float64 with NaN for nulls)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    return _table_to_columns(table)


def read_csv_columns(
    path: str | os.PathLike[str], columns: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Read a CSV file (header row, types inferred by Arrow) into ``name -> numpy array``."""
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(
        include_columns=list(columns) if columns is not None else None,
        strings_can_be_null=True,
    )
    return _table_to_columns(pacsv.read_csv(path, convert_options=convert))


# -- validation -----------------------------------------------------------------------------------


def _get_int(data: Mapping[str, Any], key: str, path: str, minimum: int = 0) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{path}: expected an integer >= {minimum}, got {value!r}")
    return value


def _get_float(
    data: Mapping[str, Any], key: str, path: str, optional: bool = False
) -> float | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{path}: expected a finite number, got {value!r}")
    return float(value)


def _get_list(data: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
    return value


def _int_array(items: list[Any], path: str) -> np.ndarray:
    for i, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise ValueError(f"{path}[{i}]: expected a non-negative integer, got {x!r}")
    return np.array(items, dtype=np.int64)


def _float_array(items: list[Any], path: str) -> np.ndarray:
    if all(type(x) is float for x in items):  # what JSON gives for a profile's floats
        arr = np.array(items, dtype=np.float64)
        if np.isfinite(arr).all():
            return arr
    for i, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            raise ValueError(f"{path}[{i}]: expected a finite number, got {x!r}")
    return np.array(items, dtype=np.float64)


def _check_scalar(value: Any, path: str, numeric: bool) -> Any:
    if numeric:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, str | bool | int | float) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise ValueError(f"{path}: expected a string, boolean or number, got {value!r}")
    return value


def _feature_from_dict(name: str, data: Any, path: str) -> FeatureProfile:
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected an object")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{path}.kind: expected one of {KINDS}, got {kind!r}")
    numeric = kind == NUMERIC
    fp = FeatureProfile(name, kind)
    fp.count = _get_int(data, "count", f"{path}.count")
    fp.nulls = _get_int(data, "nulls", f"{path}.nulls")
    fp.n = _get_int(data, "n", f"{path}.n")
    fp.max_values = _get_int(data, "max_values", f"{path}.max_values", minimum=1)
    fp.other = _get_int(data, "other", f"{path}.other")
    overflow = data.get("values_overflow")
    if not isinstance(overflow, bool):
        raise ValueError(f"{path}.values_overflow: expected a boolean, got {overflow!r}")
    fp.values_overflow = overflow
    table: dict[Any, int] = {}
    for i, pair in enumerate(_get_list(data, "values", f"{path}.values")):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"{path}.values[{i}]: expected a [value, count] pair")
        key = _check_scalar(pair[0], f"{path}.values[{i}][0]", numeric)
        count = pair[1]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{path}.values[{i}][1]: expected a non-negative integer")
        if key in table:
            raise ValueError(f"{path}.values[{i}]: duplicate value {key!r}")
        table[key] = count
    if len(table) > fp.max_values:
        raise ValueError(f"{path}.values: {len(table)} entries exceed max_values {fp.max_values}")
    fp.values = table
    if numeric:
        fp.infinite = _get_int(data, "infinite", f"{path}.infinite")
        fp.mean = _get_float(data, "mean", f"{path}.mean") or 0.0
        fp.m2 = _get_float(data, "m2", f"{path}.m2") or 0.0
        if fp.m2 < 0:
            raise ValueError(f"{path}.m2: must not be negative")
        fp.min = _get_float(data, "min", f"{path}.min", optional=True)
        fp.max = _get_float(data, "max", f"{path}.max", optional=True)
        if (fp.min is None or fp.max is None) != (fp.n == 0):
            raise ValueError(f"{path}.min/max: required exactly when n > 0")
        if fp.min is not None and fp.max is not None and fp.min > fp.max:
            raise ValueError(f"{path}.min: greater than max")
        fp.edges = _float_array(_get_list(data, "edges", f"{path}.edges"), f"{path}.edges")
        if np.any(np.diff(fp.edges) <= 0):
            raise ValueError(f"{path}.edges: must be strictly increasing")
        nb = fp.edges.size + 1
        counts = _get_list(data, "bin_counts", f"{path}.bin_counts")
        sums = _get_list(data, "bin_sums", f"{path}.bin_sums")
        if len(counts) != nb:
            raise ValueError(f"{path}.bin_counts: expected {nb} counts, got {len(counts)}")
        if len(sums) != nb:
            raise ValueError(f"{path}.bin_sums: expected {nb} sums, got {len(sums)}")
        fp.bin_counts = _int_array(counts, f"{path}.bin_counts")
        fp.bin_sums = _float_array(sums, f"{path}.bin_sums")
        if int(fp.bin_counts.sum()) != fp.n:
            raise ValueError(f"{path}.bin_counts: sum {int(fp.bin_counts.sum())} != n ({fp.n})")
        if fp.other:
            raise ValueError(f"{path}.other: must be 0 for a numeric feature")
        if not fp.values_overflow and sum(table.values()) != fp.n:
            raise ValueError(f"{path}.values: counts do not sum to n ({fp.n})")
        if fp.values_overflow and table:
            raise ValueError(f"{path}.values: must be empty when values_overflow is true")
    else:
        for key in ("edges", "bin_counts", "bin_sums", "mean", "m2", "min", "max", "infinite"):
            if key in data:
                raise ValueError(f"{path}.{key}: not allowed for a categorical feature")
        if sum(table.values()) + fp.other != fp.n:
            raise ValueError(f"{path}.values: counts plus other do not sum to n ({fp.n})")
        if bool(fp.other) != fp.values_overflow:
            raise ValueError(f"{path}.values_overflow: must be true exactly when other > 0")
    if fp.nulls + fp.infinite + fp.n != fp.count:
        raise ValueError(f"{path}.count: nulls + infinite + n != count")
    sample = data.get("sample")
    if not isinstance(sample, Mapping):
        raise ValueError(f"{path}.sample: expected an object")
    capacity = _get_int(sample, "capacity", f"{path}.sample.capacity")
    seen = _get_int(sample, "seen", f"{path}.sample.seen")
    if seen != fp.n:
        raise ValueError(f"{path}.sample.seen: {seen} != n ({fp.n})")
    items = _get_list(sample, "values", f"{path}.sample.values")
    if len(items) != min(capacity, seen):
        raise ValueError(
            f"{path}.sample.values: expected {min(capacity, seen)} values, got {len(items)}"
        )
    if numeric:
        values = _float_array(items, f"{path}.sample.values")
    else:
        values = np.empty(len(items), dtype=object)
        values[:] = [
            _check_scalar(x, f"{path}.sample.values[{i}]", False) for i, x in enumerate(items)
        ]
    fp.sample = Reservoir(capacity, seen, values)
    return fp
