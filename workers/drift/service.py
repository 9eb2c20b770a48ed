"""Service metrics: request latency quantiles from a mergeable log-scale histogram, error rate.

:class:`LatencySketch` buckets positive values by ``ceil(log_γ(x))`` with
``γ = (1 + α) / (1 - α)``: bucket ``i`` holds ``(γ^(i-1), γ^i]`` and is represented by
``2 γ^i / (γ + 1)``, which is within a relative error ``α`` of every value in it (the DDSketch
construction). Counts per bucket are exact, so the quantile found by walking the buckets is
within ``α`` (relative) of the exact order statistic of rank ``floor(q · (n - 1))`` (numpy's
``method='lower'``). Sketches with the same ``α`` merge by adding counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LatencySketch", "ServiceMetrics"]

SCHEMA_VERSION = 1


class LatencySketch:
    """Log-scale histogram of non-negative values (milliseconds, say) with relative accuracy α."""

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.relative_accuracy = float(relative_accuracy)
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.buckets: dict[int, int] = {}
        self.zero_count = 0  # values <= 0

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.buckets.values())

    def add(self, values: Any) -> LatencySketch:
        """Add values (vectorised); NaN and negative values are rejected."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return self
        if not np.isfinite(v).all() or (v < 0).any():
            raise ValueError("latencies must be finite and non-negative")
        positive = v[v > 0]
        self.zero_count += int(v.size - positive.size)
        if positive.size:
            idx = np.ceil(np.log(positive) / self._log_gamma).astype(np.int64)
            keys, counts = np.unique(idx, return_counts=True)
            for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
                self.buckets[k] = self.buckets.get(k, 0) + c
        return self

    def merge(self, other: LatencySketch) -> LatencySketch:
        if not math.isclose(self.relative_accuracy, other.relative_accuracy):
            raise ValueError("cannot merge sketches with different relative accuracy")
        out = LatencySketch(self.relative_accuracy)
        out.zero_count = self.zero_count + other.zero_count
        out.buckets = dict(self.buckets)
        for k, c in other.buckets.items():
            out.buckets[k] = out.buckets.get(k, 0) + c
        return out

    def quantile(self, q: float) -> float | None:
        """Value at rank ``floor(q · (n - 1))`` within relative error α; None when empty."""
        if not 0 <= q <= 1:
            raise ValueError("q must be in [0, 1]")
        n = self.count
        if n == 0:
            return None
        rank = math.floor(q * (n - 1))
        if rank < self.zero_count:
            return 0.0
        seen = self.zero_count
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen > rank:
                return 2 * self.gamma**k / (self.gamma + 1)
        raise AssertionError("unreachable: rank below total count")  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        return {
            "relative_accuracy": self.relative_accuracy,
            "zero_count": self.zero_count,
            "buckets": [[k, c] for k, c in sorted(self.buckets.items())],
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "latency") -> LatencySketch:
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected an object")
        alpha = data.get("relative_accuracy")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
            raise ValueError(f"{path}.relative_accuracy: expected a number in (0, 1)")
        sketch = cls(float(alpha))
        zero = data.get("zero_count")
        if isinstance(zero, bool) or not isinstance(zero, int) or zero < 0:
            raise ValueError(f"{path}.zero_count: expected a non-negative integer")
        sketch.zero_count = zero
        buckets = data.get("buckets")
        if not isinstance(buckets, list):
            raise ValueError(f"{path}.buckets: expected a list of [index, count] pairs")
        for i, pair in enumerate(buckets):
            ok = (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
                and pair[1] >= 0
            )
            if not ok:
                raise ValueError(f"{path}.buckets[{i}]: expected [integer index, count >= 0]")
            if pair[0] in sketch.buckets:
                raise ValueError(f"{path}.buckets[{i}]: duplicate index {pair[0]}")
            sketch.buckets[pair[0]] = pair[1]
        return sketch


@dataclass
class ServiceMetrics:
    """Request count, error count and latency sketch of one window; mergeable and JSON-able."""

    requests: int = 0
    errors: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)

    def observe(self, latencies_ms: Any, errors: Any = 0) -> ServiceMetrics:
        """Add requests: their latencies and either an error count or a per-request error flag."""
        lat = np.asarray(latencies_ms, dtype=np.float64).ravel()
        err = np.asarray(errors)
        if err.ndim == 0:
            n_err = int(err)
        else:
            if err.size != lat.size:
                raise ValueError("errors flags must match latencies one to one")
            n_err = int(np.count_nonzero(err))
        if not 0 <= n_err <= lat.size:
            raise ValueError("error count must be between 0 and the number of requests")
        self.latency.add(lat)
        self.requests += lat.size
        self.errors += n_err
        return self

    def merge(self, other: ServiceMetrics) -> ServiceMetrics:
        return ServiceMetrics(
            self.requests + other.requests,
            self.errors + other.errors,
            self.latency.merge(other.latency),
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "latency_ms": {
                "p50": self.latency.quantile(0.50),
                "p95": self.latency.quantile(0.95),
                "p99": self.latency.quantile(0.99),
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "requests": self.requests,
            "errors": self.errors,
            "latency": self.latency.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ServiceMetrics:
        if not isinstance(data, Mapping):
            raise ValueError("service metrics: expected an object")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version: expected {SCHEMA_VERSION}, got {data.get('schema_version')!r}"
            )
        counts = {}
        for key in ("requests", "errors"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key}: expected a non-negative integer, got {value!r}")
            counts[key] = value
        if counts["errors"] > counts["requests"]:
            raise ValueError("errors: more errors than requests")
        latency = LatencySketch.from_dict(data.get("latency"))
        if latency.count != counts["requests"]:
            raise ValueError("latency: sketch count differs from requests")
        return cls(counts["requests"], counts["errors"], latency)
