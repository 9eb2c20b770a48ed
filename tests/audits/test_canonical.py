"""audits.services.canonical: the bytes every audit hash is taken over.

Its fast path (Python's C JSON encoder) must give exactly what RFC 8785 gives
(the ``rfc8785`` package), for every value, or the chain would not verify."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audits.services import _encodes_alike, canonical

_keys = st.text(max_size=8) | st.sampled_from(["a", "B", "é", "\U0001f600", "\uffff", "ｱ"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from([0.0, -0.0, 1.0, 1e21, 1e-7, 123456789.0, 0.1, 2**53 - 1, 2**53])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_keys, inner, max_size=4)
        | st.dictionaries(st.integers(), inner, min_size=1, max_size=2)
    ),
    max_leaves=20,
)


def _reference(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        return type(exc)


def _ours(value: Any) -> bytes | type[Exception]:
    try:
        return canonical(value)
    except rfc8785.CanonicalizationError as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(_values)
def test_canonical_equals_rfc8785_for_any_value(value: Any) -> None:
    assert _ours(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"metrics": {"auc": 0.91, "loss": 1.0}},  # integral float: JCS writes 1
        {"n": 1e16},  # repr uses an exponent, JCS does not
        {"n": 2**53},  # beyond JCS's integers: refused
        {1: "int key"},  # json would write "1"
        {"\U0001f600": 1, "\uffff": 2},  # UTF-16 order differs from code point order
        {"s": "\ud800"},  # a lone surrogate
        {"z": -0.0},
    ],
)
def test_values_the_fast_path_must_not_take(value: Any) -> None:
    assert _ours(value) == _reference(value)


def test_an_ordinary_event_takes_the_fast_path() -> None:
    event = {
        "seq": 0,
        "time": "",
        "actor": "pipeline-bot",
        "changes": {"after": {"metrics": {"auc": 0.91}, "tags": ["a", "b"], "n": 3}},
        "object_repr": 'scorer 1.0 — "quoted"\n\ttabbed \x01',
    }
    assert _encodes_alike(event)
    assert canonical(event) == rfc8785.dumps(event)
