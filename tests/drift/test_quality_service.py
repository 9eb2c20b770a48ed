"""Data-quality checks from profiles and service metrics (latency sketch, error rate)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workers.drift import (
    LatencySketch,
    ServiceMetrics,
    build_reference_profile,
    data_quality,
    fold,
    window_profile,
)


def _batch(seed: int, n: int, *, null_share: float = 0.0, shift: float = 0.0, new: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < null_share] = np.nan
    cats = ["a", "b", "c", "zz"] if new else ["a", "b", "c"]
    p = [0.3, 0.3, 0.3, 0.1] if new else None
    return {"x": x, "c": rng.choice(cats, n, p=p).astype(object)}


@pytest.fixture(scope="module")
def reference():
    return build_reference_profile(_batch(0, 20_000, null_share=0.01), rng=0)


def test_clean_window_raises_no_alert(reference) -> None:
    window = fold(window_profile(reference), _batch(1, 5000, null_share=0.01), rng=0)
    report = data_quality(reference, window)
    assert not report.alert
    assert report["x"].out_of_range_share < 0.001
    assert report["c"].new_categories == () and report["c"].new_category_share == 0.0


def test_null_rate_jump_out_of_range_and_new_categories(reference) -> None:
    batch = _batch(2, 5000, null_share=0.2, shift=3.0, new=True)
    window = fold(window_profile(reference), batch, rng=0)
    report = data_quality(reference, window)
    x, c = report["x"], report["c"]
    assert x.null_alert and x.null_rate_jump == pytest.approx(0.19, abs=0.02)
    valid = batch["x"][np.isfinite(batch["x"])]
    ref_min, ref_max = reference["x"].min, reference["x"].max
    expected = np.mean((valid < ref_min) | (valid > ref_max))
    assert x.out_of_range_share == pytest.approx(expected, abs=1e-12) and x.out_of_range_alert
    assert c.new_categories == ("zz",) and c.new_category_alert
    assert c.new_category_share == pytest.approx(np.mean(batch["c"] == "zz"), abs=1e-12)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["alert"] is True and data["features"][1]["new_categories"] == ["zz"]


def test_latency_quantiles_within_relative_accuracy() -> None:
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(3.0, 0.8, 100_000)  # milliseconds
    latencies[:50] = 0.0
    sketch = LatencySketch(0.01).add(latencies)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        exact = np.quantile(latencies, q, method="lower")
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - exact) <= 0.01 * exact + 1e-12, q


def test_sketches_and_service_metrics_merge_exactly() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.exponential(40, 3000), rng.exponential(90, 5000)
    errors_a = rng.random(3000) < 0.02
    left = ServiceMetrics().observe(a, errors_a)
    right = ServiceMetrics().observe(b, 7)
    merged = left.merge(right)
    whole = LatencySketch().add(np.concatenate([a, b]))
    assert merged.latency.buckets == whole.buckets
    assert merged.requests == 8000 and merged.errors == int(errors_a.sum()) + 7
    summary = merged.summary()
    assert summary["error_rate"] == pytest.approx(merged.errors / 8000)
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = np.quantile(np.concatenate([a, b]), q, method="lower")
        assert summary["latency_ms"][key] == pytest.approx(exact, rel=0.01)
    again = ServiceMetrics.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert again.summary() == summary


def test_service_metrics_validation() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        LatencySketch().add([1.0, -2.0])
    with pytest.raises(ValueError, match="one to one"):
        ServiceMetrics().observe([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="different relative accuracy"):
        LatencySketch(0.01).merge(LatencySketch(0.02))
    good = ServiceMetrics().observe([5.0, 6.0], 1).to_dict()
    with pytest.raises(ValueError, match="errors: more errors than requests"):
        ServiceMetrics.from_dict({**good, "errors": 3})
    with pytest.raises(ValueError, match=r"latency\.buckets\[0\]"):
        ServiceMetrics.from_dict({**good, "latency": {**good["latency"], "buckets": [["x", 1]]}})
    with pytest.raises(ValueError, match="sketch count differs"):
        ServiceMetrics.from_dict({**good, "requests": 5})
    assert LatencySketch().quantile(0.5) is None
