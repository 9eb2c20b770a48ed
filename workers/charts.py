"""Plotly figures of the monitoring pages, as plain dicts (``static/js/charts.js`` draws them)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from workers.drift import FeatureProfile

P_VALUE_METHODS = {"ks", "chisquare", "z"}
FONT = {"family": "DejaVu Sans, sans-serif", "size": 12}
BLUE, RED, GREY, TEAL, ORANGE = "#3557a3", "#b42318", "#98a2b3", "#0f766e", "#b54708"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def to_json(fig: dict[str, Any]) -> str:
    """JSON for a ``<script type="application/json">`` element (``<`` escaped; NaN -> null)."""
    return json.dumps(_clean(fig), allow_nan=False).replace("<", "\\u003c")


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 34, "b": 40},
        "font": FONT,
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        "hovermode": "x unified",
        **extra,
    }


def drift_ratio(fd: dict[str, Any]) -> float:
    """How far past its threshold a feature is (> 1: drifted), comparable across methods."""
    score, threshold = fd.get("score"), fd.get("threshold")
    if score is None or not threshold:
        return 0.0
    if fd.get("method") in P_VALUE_METHODS:
        return threshold / max(score, 1e-300)
    return score / threshold


def drift_over_time(results: Sequence[Any], features: list[str]) -> dict[str, Any]:
    """One small panel per feature: its drift score per window and the threshold (dashed)."""
    n = max(len(features), 1)
    data: list[dict[str, Any]] = []
    layout = _layout(150 * n + 40, showlegend=False, hovermode="closest")
    layout["grid"] = {"rows": n, "columns": 1, "pattern": "independent", "ygap": 0.35}
    annotations = []
    for i, name in enumerate(features):
        axis = "" if i == 0 else str(i + 1)
        x, y, thr, colours = [], [], [], []
        method = ""
        for r in results:
            fd = next((f for f in r.features if f["feature"] == name), None)
            if fd is None or fd.get("score") is None:
                continue
            method = fd["method"]
            x.append(r.window_end.isoformat())
            y.append(max(fd["score"], 1e-300) if method in P_VALUE_METHODS else fd["score"])
            thr.append(fd["threshold"])
            colours.append(RED if fd["drifted"] else BLUE)
        ref = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": x,
                "y": y,
                "line": {"color": BLUE, "width": 1.5},
                "marker": {"color": colours, "size": 5},
                **ref,
            }
        )
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "threshold",
                "x": x,
                "y": thr,
                "line": {"color": RED, "dash": "dash", "width": 1},
                **ref,
            }
        )
        p_value = method in P_VALUE_METHODS
        layout[f"yaxis{axis}"] = {
            "type": "log" if p_value else "linear",
            "title": {"text": "p-value" if p_value else "distance", "font": {"size": 10}},
            "rangemode": "tozero",
        }
        layout[f"xaxis{axis}"] = {"showticklabels": i == n - 1}
        note = "drifts below the line" if p_value else "drifts above the line"
        annotations.append(
            {
                "text": f"<b>{name}</b> · {method or 'n/a'} ({note})",
                "xref": f"x{axis} domain",
                "yref": f"y{axis} domain",
                "x": 0,
                "y": 1.18,
                "showarrow": False,
                "xanchor": "left",
                "font": {"size": 11},
            }
        )
    layout["annotations"] = annotations
    return {"data": data, "layout": layout}


def _quantile(fp: FeatureProfile, q: float) -> float | None:
    """A quantile of a numeric profile from its bins (linear within a bin)."""
    if fp.n == 0 or fp.bin_counts.size == 0:
        return None
    target = q * fp.n
    cum = np.cumsum(fp.bin_counts)
    j = int(np.searchsorted(cum, target, side="left"))
    j = min(j, fp.bin_counts.size - 1)
    edges = fp.edges
    lo = edges[j - 1] if j >= 1 else (fp.min if fp.min is not None else edges[0])
    hi = edges[j] if j < edges.size else (fp.max if fp.max is not None else edges[-1])
    below = cum[j] - fp.bin_counts[j]
    inside = fp.bin_counts[j]
    frac = (target - below) / inside if inside else 0.0
    return float(lo + (hi - lo) * min(max(frac, 0.0), 1.0))


def predictions_over_time(windows: Sequence[Any]) -> dict[str, Any] | None:
    """Numeric predictions: mean and the 10–90% band per window; categorical: shares."""
    points = []
    for w in windows:
        if not w.predictions:
            continue
        fp = FeatureProfile.from_dict("prediction", w.predictions)
        if fp.n:
            points.append((w.end.isoformat(), fp))
    if not points:
        return None
    x = [p[0] for p in points]
    if points[0][1].numeric:
        q = {level: [_quantile(fp, level) for _, fp in points] for level in (0.1, 0.5, 0.9)}
        means = [fp.mean for _, fp in points]
        data = [
            {"type": "scatter", "mode": "lines", "x": x, "y": q[0.9], "name": "90th pct",
             "line": {"width": 0, "color": BLUE}, "showlegend": False},
            {"type": "scatter", "mode": "lines", "x": x, "y": q[0.1], "name": "10–90%",
             "fill": "tonexty", "fillcolor": "rgba(53,87,163,0.18)",
             "line": {"width": 0, "color": BLUE}},
            {"type": "scatter", "mode": "lines", "x": x, "y": q[0.5], "name": "median",
             "line": {"color": BLUE}},
            {"type": "scatter", "mode": "lines", "x": x, "y": means, "name": "mean",
             "line": {"color": TEAL, "dash": "dot"}},
        ]  # fmt: skip
        return {"data": data, "layout": _layout(260, yaxis={"title": {"text": "prediction"}})}
    totals: dict[Any, int] = {}
    for _, fp in points:
        for k, c in fp.values.items():
            totals[k] = totals.get(k, 0) + c
    top = [k for k, _ in sorted(totals.items(), key=lambda kc: -kc[1])[:8]]
    data = []
    for k in top:
        data.append(
            {
                "type": "bar",
                "name": str(k),
                "x": x,
                "y": [fp.values.get(k, 0) / fp.n for _, fp in points],
            }
        )
    layout = _layout(260, barmode="stack", yaxis={"title": {"text": "share"}, "range": [0, 1]})
    return {"data": data, "layout": layout}


def _budget_line(x: list[str], value: float | None, name: str) -> list[dict[str, Any]]:
    if value is None or not x:
        return []
    return [
        {
            "type": "scatter",
            "mode": "lines",
            "x": [x[0], x[-1]],
            "y": [value, value],
            "name": name,
            "line": {"color": RED, "dash": "dash", "width": 1},
        }
    ]


def latency_over_time(results: Sequence[Any], budget: float | None) -> dict[str, Any] | None:
    rows = [r for r in results if (r.service or {}).get("requests")]
    if not rows:
        return None
    x = [r.window_end.isoformat() for r in rows]
    colours = {"p50": TEAL, "p95": BLUE, "p99": ORANGE}
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": q,
            "x": x,
            "y": [r.service["latency_ms"][q] for r in rows],
            "line": {"color": colours[q]},
        }
        for q in ("p50", "p95", "p99")
    ]
    data += _budget_line(x, budget, "p95 budget")
    return {"data": data, "layout": _layout(240, yaxis={"title": {"text": "ms"}})}


def errors_over_time(results: Sequence[Any], budget: float | None) -> dict[str, Any] | None:
    rows = [r for r in results if (r.service or {}).get("requests")]
    if not rows:
        return None
    x = [r.window_end.isoformat() for r in rows]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "error rate",
            "x": x,
            "y": [r.service["error_rate"] for r in rows],
            "line": {"color": BLUE},
            "marker": {"size": 4},
        }
    ]
    data += _budget_line(x, budget, "budget")
    return {
        "data": data,
        "layout": _layout(240, yaxis={"title": {"text": "error rate"}, "tickformat": ".1%"}),
    }


def performance_over_time(
    results: Sequence[Any], floors: dict[str, float]
) -> dict[str, Any] | None:
    rows = [r for r in results if (r.performance or {}).get("labelled")]
    if not rows:
        return None
    x = [r.window_end.isoformat() for r in rows]
    data = []
    for metric, colour in (("accuracy", BLUE), ("auc", TEAL)):
        values = [r.performance.get(metric) for r in rows]
        if any(v is not None for v in values):
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": metric,
                    "x": x,
                    "y": values,
                    "line": {"color": colour},
                    "marker": {"size": 4},
                }
            )
            data += _budget_line(x, floors.get(metric), f"{metric} floor")
    return {"data": data, "layout": _layout(240, yaxis={"title": {"text": "on labelled rows"}})}


def _rebin(fp: FeatureProfile, lo: float, hi: float, bins: int) -> np.ndarray:
    """Counts of the interior bins spread over ``bins`` equal bins of ``[lo, hi]`` (uniformly
    within each source bin), for display."""
    out = np.zeros(bins)
    width = (hi - lo) / bins
    edges = fp.edges
    for j in range(1, edges.size):
        a, b, c = edges[j - 1], edges[j], fp.bin_counts[j]
        if c == 0:
            continue
        if b < lo or a > hi:
            continue
        if b <= a:
            out[min(max(int((a - lo) / width), 0), bins - 1)] += c
            continue
        first, last = int((a - lo) / width), min(int((b - lo) / width), bins - 1)
        for t in range(max(first, 0), last + 1):
            t_lo, t_hi = lo + t * width, lo + (t + 1) * width
            overlap = max(0.0, min(b, t_hi) - max(a, t_lo))
            out[t] += c * overlap / (b - a)
    return out


def feature_histogram(
    name: str, reference: FeatureProfile, current: FeatureProfile
) -> tuple[dict[str, Any], str]:
    """Reference against current distribution of one feature (shares), and a note on what
    the chart leaves out."""
    if reference.numeric:
        e = reference.edges
        inner = e.size > 10  # quantile edges: show the reference's 1st..99th percentiles
        lo, hi = (float(e[1]), float(e[-2])) if inner else (float(e[0]), float(e[-1]))
        bins = 30 if hi > lo else 1
        if hi <= lo:
            hi = lo + 1.0
        width = (hi - lo) / bins
        mids = [lo + (i + 0.5) * width for i in range(bins)]
        data = []
        for label, fp, colour in (("reference", reference, GREY), ("current", current, BLUE)):
            counts = _rebin(fp, lo, hi, bins)
            share = (counts / fp.n).tolist() if fp.n else [0.0] * bins
            data.append(
                {
                    "type": "bar",
                    "name": label,
                    "x": mids,
                    "y": share,
                    "width": width * 0.9,
                    "marker": {"color": colour},
                    "opacity": 0.75,
                }
            )
        below = current.bin_counts[0] / current.n if current.n else 0.0
        above = current.bin_counts[-1] / current.n if current.n else 0.0
        note = f"current below the reference range: {below:.1%}, above: {above:.1%}"
        if inner:
            note = f"Shown: the reference's 1st–99th percentiles; {note}."
        layout = _layout(
            300,
            barmode="overlay",
            xaxis={"title": {"text": name}},
            yaxis={"title": {"text": "share"}, "tickformat": ".0%"},
            hovermode="closest",
        )
        return {"data": data, "layout": layout}, note
    keys = [k for k, _ in sorted(reference.values.items(), key=lambda kc: -kc[1])[:20]]
    keys += [k for k, c in current.values.items() if k not in keys and c > 0][: 25 - len(keys)]
    data = []
    for label, fp, colour in (("reference", reference, GREY), ("current", current, BLUE)):
        data.append(
            {
                "type": "bar",
                "name": label,
                "x": [str(k) for k in keys],
                "y": [fp.values.get(k, 0) / fp.n if fp.n else 0 for k in keys],
                "marker": {"color": colour},
            }
        )
    layout = _layout(300, barmode="group", yaxis={"title": {"text": "share"}, "tickformat": ".0%"})
    layout["hovermode"] = "closest"
    new = sum(c for k, c in current.values.items() if k not in reference.values) + current.other
    share = new / current.n if current.n else 0.0
    return {"data": data, "layout": layout}, f"Categories unseen in the reference: {share:.1%}."
