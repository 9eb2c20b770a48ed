"""Label performance of a window as mergeable counts (pure Python and numpy, JSON-able).

A window keeps, over its predictions whose labels have arrived:

* ``labelled`` and ``correct`` — accuracy is ``correct / labelled``. A numeric prediction of a
  binary label (booleans, 0/1) is a score: it predicts the positive class when it is at or above
  the deployment's ``classification_threshold``. Otherwise a prediction is correct when it
  equals the label.
* ``pos`` / ``neg`` — for scores in ``[0, 1]`` of binary labels, histograms of the scores of
  positive and negative examples on ``BINS`` equal bins. AUC is ``P(s+ > s-) + ½ P(s+ = s-)``
  with scores in the same bin counted as ties, so the error is at most half the share of
  positive/negative pairs that share a bin (reported as ``auc_error_bound``). Scores outside
  ``[0, 1]`` or non-binary labels leave AUC undefined (``auc_undefined``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

BINS = 1000


def empty() -> dict[str, Any]:
    return {"labelled": 0, "correct": 0, "pos": [0] * BINS, "neg": [0] * BINS, "auc_undefined": 0}


def _binary(label: Any) -> int | None:
    if isinstance(label, bool):
        return int(label)
    if isinstance(label, int | float) and label in (0, 1):
        return int(label)
    return None


def add(
    acc: dict[str, Any], predictions: Sequence[Any], labels: Sequence[Any], threshold: float
) -> dict[str, Any]:
    """Add labelled predictions to ``acc`` (in place) and return it."""
    if not acc:
        acc.update(empty())
    pos = np.asarray(acc["pos"], dtype=np.int64)
    neg = np.asarray(acc["neg"], dtype=np.int64)
    for pred, label in zip(predictions, labels, strict=True):
        if pred is None:
            continue
        acc["labelled"] += 1
        y = _binary(label)
        is_score = isinstance(pred, int | float) and not isinstance(pred, bool)
        if is_score and y is not None:
            acc["correct"] += int(int(pred >= threshold) == y)
            if 0.0 <= pred <= 1.0:
                b = min(int(pred * BINS), BINS - 1)
                (pos if y else neg)[b] += 1
            else:
                acc["auc_undefined"] += 1
        else:
            acc["correct"] += int(pred == label or str(pred) == str(label))
            acc["auc_undefined"] += 1
    acc["pos"], acc["neg"] = pos.tolist(), neg.tolist()
    return acc


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    a, b = a or empty(), b or empty()
    return {
        "labelled": a["labelled"] + b["labelled"],
        "correct": a["correct"] + b["correct"],
        "pos": [x + y for x, y in zip(a["pos"], b["pos"], strict=True)],
        "neg": [x + y for x, y in zip(a["neg"], b["neg"], strict=True)],
        "auc_undefined": a["auc_undefined"] + b["auc_undefined"],
    }


def auc(pos: Sequence[int], neg: Sequence[int]) -> tuple[float | None, float | None]:
    """AUC from binned scores and the bound on its error (ties within a bin)."""
    p = np.asarray(pos, dtype=np.float64)
    n = np.asarray(neg, dtype=np.float64)
    n_pos, n_neg = p.sum(), n.sum()
    if n_pos == 0 or n_neg == 0:
        return None, None
    below = np.concatenate([[0.0], np.cumsum(n)[:-1]])  # negatives in lower bins
    greater = float((p * below).sum())
    ties = float((p * n).sum())
    pairs = n_pos * n_neg
    return (greater + 0.5 * ties) / pairs, 0.5 * ties / pairs


def summary(acc: dict[str, Any]) -> dict[str, Any]:
    """``labelled``, ``accuracy`` and, where defined, ``auc`` (with its error bound)."""
    if not acc or not acc.get("labelled"):
        return {"labelled": 0, "accuracy": None, "auc": None, "auc_error_bound": None}
    value, bound = (None, None)
    if not acc["auc_undefined"]:
        value, bound = auc(acc["pos"], acc["neg"])
    accuracy = acc["correct"] / acc["labelled"]
    return {
        "labelled": acc["labelled"],
        "accuracy": accuracy if math.isfinite(accuracy) else None,
        "auc": value,
        "auc_error_bound": bound,
    }
