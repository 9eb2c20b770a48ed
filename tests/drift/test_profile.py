"""Profiles: construction, folding, merging, reservoir uniformity, JSON, readers, isolation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.stats as ss

from workers.drift import (
    DatasetProfile,
    build_reference_profile,
    fold,
    infer_kind,
    merge,
    read_csv_columns,
    read_parquet_columns,
    window_profile,
)
from workers.drift.profile import Reservoir, _merge_samples


def _columns(seed: int, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    x[::97] = np.nan
    x[5] = np.inf
    x[6] = -np.inf
    cat = rng.choice(["a", "b", "c", "d"], n).astype(object)
    cat[::31] = None
    return {
        "x": x,
        "k": rng.integers(0, 4, n).astype(float),
        "cat": cat,
        "flag": rng.random(n) < 0.3,
    }


@pytest.fixture(scope="module")
def reference() -> DatasetProfile:
    return build_reference_profile(_columns(0, 20_000), rng=0)


def test_reference_profile_counts_moments_and_histogram(reference: DatasetProfile) -> None:
    raw = _columns(0, 20_000)["x"]
    valid = raw[np.isfinite(raw)]
    fp = reference["x"]
    assert (fp.kind, fp.count, fp.nulls, fp.infinite, fp.n) == (
        "numeric",
        20_000,
        int(np.isnan(raw).sum()),
        2,
        valid.size,
    )
    assert fp.mean == pytest.approx(valid.mean(), rel=1e-12)
    assert fp.variance == pytest.approx(valid.var(), rel=1e-12)
    assert (fp.min, fp.max) == (valid.min(), valid.max())
    expected_edges = np.unique(np.quantile(valid, np.linspace(0, 1, 101)))
    np.testing.assert_allclose(fp.edges, expected_edges, rtol=0, atol=1e-12)
    # interior bins are numpy.histogram's bins; the outer bins of a reference are empty
    np.testing.assert_array_equal(fp.bin_counts[1:-1], np.histogram(valid, fp.edges)[0])
    assert fp.bin_counts[0] == fp.bin_counts[-1] == 0
    idx = np.searchsorted(fp.edges, valid, side="right")
    idx[valid == fp.edges[-1]] -= 1
    np.testing.assert_allclose(fp.bin_sums, np.bincount(idx, valid, fp.edges.size + 1), atol=1e-9)
    assert fp.values_overflow and fp.n_unique is None
    assert fp.sample.values.size == 1000 and fp.sample.seen == valid.size
    assert np.isfinite(fp.sample.values).all()


def test_low_cardinality_and_categorical_tables(reference: DatasetProfile) -> None:
    cols = _columns(0, 20_000)
    k = reference["k"]
    assert k.edges.tolist() == [0.0, 1.0, 2.0, 3.0]  # the distinct values
    values, counts = np.unique(cols["k"], return_counts=True)
    assert k.values == dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert k.n_unique == 4
    cat = reference["cat"]
    assert cat.kind == "categorical"
    assert cat.nulls == int(sum(v is None for v in cols["cat"]))
    assert sum(cat.values.values()) == cat.n == cat.count - cat.nulls
    assert set(cat.values) == {"a", "b", "c", "d"}
    flag = reference["flag"]
    assert flag.kind == "categorical" and set(flag.values) == {False, True}
    assert flag.values[True] == int(cols["flag"].sum())


def test_caps_on_distinct_values_and_categories() -> None:
    rng = np.random.default_rng(1)
    cats = np.array([f"c{i}" for i in rng.integers(0, 60, 5000)], dtype=object)
    nums = rng.integers(0, 60, 5000).astype(float)
    prof = build_reference_profile({"cat": cats, "num": nums}, max_values=50, rng=1)
    cat = prof["cat"]
    assert len(cat.values) == 50 and cat.other > 0 and cat.values_overflow
    assert sum(cat.values.values()) + cat.other == 5000
    assert cat.n_unique is None
    # kept categories are the most frequent ones
    _, counts = np.unique(cats, return_counts=True)
    assert min(cat.values.values()) >= np.sort(counts)[-50]
    num = prof["num"]
    assert num.values_overflow and num.values == {} and num.n_unique is None
    small = build_reference_profile({"num": nums}, max_values=60, rng=1)["num"]
    assert small.n_unique == 60


def test_kind_inference_and_override() -> None:
    assert infer_kind(np.arange(3)) == "numeric"
    assert infer_kind([1.5, None, 2]) == "numeric"
    assert infer_kind(np.array(["a", "b"])) == "categorical"
    assert infer_kind(np.array([True, False])) == "categorical"
    assert infer_kind(np.array(["a", None], dtype=object)) == "categorical"
    assert infer_kind(np.array([1, True], dtype=object)) == "categorical"
    prof = build_reference_profile({"code": np.array([1, 2, 2, 3])}, kinds={"code": "categorical"})
    assert prof["code"].kind == "categorical" and prof["code"].values == {1: 1, 2: 2, 3: 1}
    with pytest.raises(ValueError, match="kinds"):
        build_reference_profile({"a": [1.0]}, kinds={"b": "numeric"})
    with pytest.raises(ValueError, match="non-numeric"):
        build_reference_profile({"a": np.array(["x"], dtype=object)}, kinds={"a": "numeric"})


def _equal_profiles(a: DatasetProfile, b: DatasetProfile) -> None:
    assert a.rows == b.rows
    for name, fa in a.features.items():
        fb = b.features[name]
        assert (fa.count, fa.nulls, fa.infinite, fa.n) == (fb.count, fb.nulls, fb.infinite, fb.n)
        assert fa.mean == pytest.approx(fb.mean, rel=1e-12, abs=1e-15)
        assert fa.m2 == pytest.approx(fb.m2, rel=1e-12)
        assert (fa.min, fa.max) == (fb.min, fb.max)
        np.testing.assert_array_equal(fa.bin_counts, fb.bin_counts)
        np.testing.assert_allclose(fa.bin_sums, fb.bin_sums, rtol=1e-12, atol=1e-9)
        assert fa.values == fb.values
        assert (fa.other, fa.values_overflow) == (fb.other, fb.values_overflow)
        assert fa.sample.seen == fb.sample.seen
        assert fa.sample.values.size == fb.sample.values.size


def test_merge_of_folds_equals_fold_of_union(reference: DatasetProfile) -> None:
    x = _columns(5, 30_000, shift=0.4)
    y = _columns(6, 12_345, shift=-0.2)
    union = {name: np.concatenate([x[name], y[name]]) for name in x}
    whole = fold(window_profile(reference), union, rng=1)
    merged = merge(
        fold(window_profile(reference), x, rng=2), fold(window_profile(reference), y, rng=3), rng=4
    )
    _equal_profiles(merged, whole)
    sequential = fold(fold(window_profile(reference), x, rng=5), y, rng=6)
    _equal_profiles(sequential, whole)


def test_merge_is_associative_and_leaves_inputs_alone(reference: DatasetProfile) -> None:
    parts = [
        fold(window_profile(reference), _columns(s, 3000 + s, 0.1 * s), rng=s) for s in (7, 8, 9)
    ]
    before = json.dumps(parts[0].to_dict())
    left = merge(merge(parts[0], parts[1], rng=1), parts[2], rng=2)
    right = merge(parts[0], merge(parts[1], parts[2], rng=3), rng=4)
    _equal_profiles(left, right)
    assert json.dumps(parts[0].to_dict()) == before


def test_window_counts_out_of_range_values_in_outer_bins(reference: DatasetProfile) -> None:
    fp = reference["x"]
    lo, hi = fp.edges[0], fp.edges[-1]
    batch = _columns(3, 10)
    batch["x"] = np.array([lo - 1, lo, hi, hi + 1e-9, hi + 5, np.nan, 0.0, 0.1, 0.2, 0.3])
    window = fold(window_profile(reference), batch, rng=0)["x"]
    assert window.bin_counts[0] == 1  # below the reference minimum
    assert window.bin_counts[-1] == 2  # above the maximum (the maximum itself is in range)
    assert window.out_of_range == 3
    assert window.bin_counts.sum() == window.n == 9 and window.nulls == 1
    interior = np.histogram(batch["x"][np.isfinite(batch["x"])], fp.edges)[0]
    np.testing.assert_array_equal(window.bin_counts[1:-1], interior)


def test_window_keeps_reference_categories_and_admits_new_ones(reference: DatasetProfile) -> None:
    window = window_profile(reference)
    assert window["cat"].values == dict.fromkeys(["a", "b", "c", "d"], 0)
    batch = {name: values[:6] for name, values in _columns(3, 10).items()}
    batch["cat"] = np.array(["a", "zz", "zz", None, "b", "a"], dtype=object)
    fp = fold(window, batch, rng=0)["cat"]
    assert fp.values == {"a": 2, "b": 1, "c": 0, "d": 0, "zz": 2}
    assert fp.n_unique == 3 and fp.nulls == 1


def test_json_round_trip_is_lossless(reference: DatasetProfile) -> None:
    window = fold(window_profile(reference), _columns(4, 5000, 0.3), rng=0)
    for prof in (reference, window):
        text = json.dumps(prof.to_dict(), allow_nan=False)
        again = DatasetProfile.from_dict(json.loads(text))
        assert again.to_dict() == prof.to_dict()
        assert again["x"].sample.values.dtype == np.float64


def test_a_sample_with_a_non_finite_value_is_not_serialised(reference: DatasetProfile) -> None:
    fp = copy.deepcopy(reference["x"])
    fp.sample.values = fp.sample.values.copy()
    fp.sample.values[7] = np.nan
    with pytest.raises(ValueError, match="non-finite value nan cannot be serialised"):
        fp.to_dict()
    # samples of other dtypes come out as the plain JSON values they hold
    fp.sample.values = np.array([3, 1, 2], dtype=np.int64)
    assert fp.to_dict()["sample"]["values"] == [3, 1, 2]
    assert all(type(v) is int for v in fp.to_dict()["sample"]["values"])
    fp.sample.values = np.array(["a", "b"])
    assert fp.to_dict()["sample"]["values"] == ["a", "b"]


def test_payload_without_sample_is_a_few_kilobytes(reference: DatasetProfile) -> None:
    window = fold(window_profile(reference, sample_size=0), _columns(4, 50_000), rng=0)
    sizes = {n: len(json.dumps(fp.to_dict())) for n, fp in window.features.items()}
    assert sizes["x"] < 6_000  # 101 edges, 102 counts and sums
    assert max(sizes["k"], sizes["cat"], sizes["flag"]) < 1_000


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d["features"]["x"]["bin_counts"].pop(), r"features\.x\.bin_counts"),
        (lambda d: d["features"]["x"].update(nulls=-1), r"features\.x\.nulls"),
        (lambda d: d["features"]["x"]["edges"].reverse(), r"features\.x\.edges"),
        (lambda d: d["features"]["x"]["sample"]["values"].pop(), r"features\.x\.sample\.values"),
        (lambda d: d["features"]["cat"].update(kind="text"), r"features\.cat\.kind"),
        (lambda d: d["features"]["cat"]["values"].append(["e"]), r"features\.cat\.values\[4\]"),
        (lambda d: d["features"]["cat"].update(n=1), r"features\.cat\.values"),
        (lambda d: d["features"]["k"].update(mean="1"), r"features\.k\.mean"),
        (lambda d: d["features"]["k"]["bin_sums"].__setitem__(0, None), r"features\.k\.bin_sums"),
        (lambda d: d.update(rows=1), r"features\.x\.count"),
        # floats checked in one pass; what is not a finite float is named by its index
        (
            lambda d: d["features"]["x"]["bin_sums"].__setitem__(3, float("inf")),
            r"features\.x\.bin_sums\[3\]: expected a finite number, got inf",
        ),
        (
            lambda d: d["features"]["x"]["sample"]["values"].__setitem__(5, True),
            r"features\.x\.sample\.values\[5\]: expected a finite number, got True",
        ),
        (
            lambda d: d["features"]["x"]["edges"].__setitem__(0, "0.5"),
            r"features\.x\.edges\[0\]: expected a finite number, got '0\.5'",
        ),
        (lambda d: d.update(features=[]), "features"),
    ],
)
def test_from_dict_names_the_bad_field(reference: DatasetProfile, mutate, message: str) -> None:
    data = copy.deepcopy(reference.to_dict())
    mutate(data)
    with pytest.raises(ValueError, match=message):
        DatasetProfile.from_dict(data)


def test_fold_and_merge_reject_mismatched_inputs(reference: DatasetProfile) -> None:
    batch = _columns(1, 10)
    del batch["k"]
    with pytest.raises(ValueError, match=r"missing \['k'\]"):
        fold(window_profile(reference), batch)
    batch = _columns(1, 10)
    batch["x"] = batch["x"][:5]
    with pytest.raises(ValueError, match="different lengths"):
        fold(window_profile(reference), batch)
    other = build_reference_profile(_columns(9, 1000), rng=0)
    with pytest.raises(ValueError, match="different bin edges"):
        merge(window_profile(reference), window_profile(other))


def test_reservoir_merge_is_uniform_over_the_union() -> None:
    """Inclusion frequency of each of 100 items (30 + 70, uneven batches) is k/N."""
    rng = np.random.default_rng(42)
    a_items, b_items = np.arange(30.0), np.arange(30.0, 100.0)
    trials, capacity = 4000, 10
    hits = np.zeros(100)
    for _ in range(trials):
        left, right = Reservoir(capacity), Reservoir(capacity)
        left.offer(a_items[:12], rng)
        left.offer(a_items[12:], rng)  # folding batches into one reservoir
        right.offer(b_items, rng)
        merged = left.merged(right, rng)  # merging two reservoirs
        assert merged.seen == 100 and merged.values.size == capacity
        assert np.unique(merged.values).size == capacity  # without replacement
        hits[merged.values.astype(int)] += 1
    expected = trials * capacity / 100
    chi2 = ((hits - expected) ** 2 / expected).sum()
    assert ss.chi2.sf(chi2, 99) > 0.001
    # an unweighted merge (half from each side) would give side A 5/30 instead of 10/100 per item
    assert hits[:30].mean() == pytest.approx(expected, rel=0.05)


def test_reservoir_merge_beyond_hypergeometric_limit() -> None:
    rng = np.random.default_rng(0)
    values = _merge_samples(np.zeros(10), 3_000_000_000, np.ones(10), 1_000_000_000, 10, rng)
    assert values.size == 10
    assert 4 <= (values == 0).sum() <= 10  # expected 7.5


def test_csv_and_parquet_readers(tmp_path: Path) -> None:
    table = pa.table(
        {
            "amount": pa.array([1.5, None, 3.0, 4.25]),
            "count": pa.array([1, 2, None, 4], type=pa.int64()),
            "country": pa.array(["fr", "de", None, "fr"]),
            "active": pa.array([True, False, True, None]),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("amount,count,country\n1.5,1,fr\n,2,de\n3.0,,\n4.25,4,fr\n")
    for cols in (
        read_parquet_columns(tmp_path / "t.parquet"),
        read_csv_columns(tmp_path / "t.csv"),
    ):
        prof = build_reference_profile(cols, rng=0)
        assert prof["amount"].kind == prof["count"].kind == "numeric"
        assert prof["amount"].nulls == prof["count"].nulls == 1
        assert prof["amount"].mean == pytest.approx((1.5 + 3.0 + 4.25) / 3)
        assert prof["country"].kind == "categorical"
        assert prof["country"].values == {"fr": 2, "de": 1} and prof["country"].nulls == 1
    parquet = build_reference_profile(read_parquet_columns(tmp_path / "t.parquet"), rng=0)
    assert parquet["active"].values == {True: 2, False: 1} and parquet["active"].nulls == 1
    only = read_parquet_columns(tmp_path / "t.parquet", columns=["amount"])
    assert list(only) == ["amount"]
