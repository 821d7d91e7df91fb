"""Category coercion: an object column is converted per distinct value, and every value
gets the canonical text that :func:`category_string` gives it alone."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
from driftline.detectors.coerce import category_array, category_string
from hypothesis import given, settings
from hypothesis import strategies as st

POOL: list[Any] = [
    None, float("nan"), np.nan, True, False, np.bool_(True), 1, 1.0, np.int64(1), np.float64(1.0),
    0, -0.0, 2.5, np.float32(0.1), float("inf"), -3, 2**60, float(2**53), "1", "true", "", "a",
    "é", b"x", np.str_("z"), "None", Decimal("1.0"), Decimal("1.00"), (1,), (True,), 0j,
    complex(-0.0, 0), np.uint8(1), np.float16(1.0),
]  # fmt: skip


def _column(values: list[Any]) -> np.ndarray[Any, np.dtype[np.object_]]:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def test_equal_values_of_other_types_are_other_categories() -> None:
    strings, null = category_array(_column([1, True, 1.0, np.int64(1), "1", None, float("nan")]))
    assert strings.tolist() == ["1", "true", "1", "1", "1", "", ""]
    assert null.tolist() == [False, False, False, False, False, True, True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(POOL), max_size=60))
def test_each_value_gets_its_own_canonical_text(values: list[Any]) -> None:
    strings, null = category_array(_column(values))
    texts = [category_string(value) for value in values]
    assert strings.tolist() == ["" if text is None else text for text in texts]
    assert null.tolist() == [text is None for text in texts]
    assert strings.dtype.kind == "U" and null.dtype == np.bool_


def test_unhashable_values_are_converted_one_by_one() -> None:
    strings, null = category_array(_column([[1], "a", None]))
    assert strings.tolist() == ["[1]", "a", ""] and null.tolist() == [False, False, True]
