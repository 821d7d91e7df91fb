"""Segments: slices of a model's traffic monitored on their own, on the model's bins.

A monitor config's ``segments`` section names keys of the events' ``segment`` object
(``{"country": "de"}``). Each key is sliced on its own (keys are not crossed): its
``max_values`` most frequent reference values are slices, and every other value (new
since the reference, empty, or the key absent from the event) is pooled as
``_other`` (:data:`~driftline.schemas.monitor.OTHER_SEGMENT`).

Whole-model bins
    A slice's reference profile keeps the whole model's bins and categories
    (:func:`rebin`): its reference counts are the slice's own, so a slice is compared
    with its own past, and the store can aggregate every slice in the same pass over
    the same bin expressions as the whole model.
Labels
    A slice is written ``key=value`` where a string is needed (``window_metrics``,
    alert ids, sorting; :func:`segment_label`) and ``{"key": "value"}`` in events and
    ``metrics.jsonl``; the whole model is ``""`` and ``null``.

Examples
--------
>>> import numpy as np
>>> top = top_values(np.array(["de", "fr", "de", "", "it", "de", "fr"]), 2)
>>> top
('de', 'fr')
>>> slice_index(np.array(["fr", "es", "de", ""]), top).tolist()
[1, 2, 0, 2]
>>> segment_label({"country": "de"}), segment_from_label("country=de")
('country=de', {'country': 'de'})
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import OTHER_SEGMENT

from .profiles import (
    CategoricalProfile,
    FeatureProfile,
    ModelProfile,
    NumericProfile,
    profile_numeric,
)

__all__ = [
    "rebin",
    "segment_from_label",
    "segment_label",
    "segment_slices",
    "slice_index",
    "slice_rows",
    "top_values",
    "with_whole_bins",
]


def segment_label(segment: Mapping[str, str] | None) -> str:
    """``key=value`` of a one-key segment; ``""`` for the whole model (``None``)."""
    if not segment:
        return ""
    ((key, value),) = segment.items()
    return f"{key}={value}"


def segment_from_label(label: str) -> dict[str, str] | None:
    """The segment object of a :func:`segment_label` (``None`` for ``""``)."""
    if not label:
        return None
    key, _, value = label.partition("=")
    return {key: value}


def top_values(values: npt.ArrayLike, max_values: int) -> tuple[str, ...]:
    """The ``max_values`` most frequent non-empty values (by falling count, then value);
    ``_other`` itself is never a slice of its own."""
    strings = np.asarray(values, dtype=str).reshape(-1)
    strings = strings[(strings != "") & (strings != OTHER_SEGMENT)]
    found, counts = np.unique(strings, return_counts=True)
    order = np.lexsort((found, -counts))[:max_values]
    return tuple(found[order].tolist())


def slice_index(values: npt.ArrayLike, top: tuple[str, ...]) -> npt.NDArray[np.intp]:
    """Each value's slice: its position in ``top``, or ``len(top)`` (``_other``)."""
    strings = np.asarray(values, dtype=str).reshape(-1)
    if not top:
        return np.zeros(strings.size, dtype=np.intp)
    known = np.array(top, dtype=str)
    order = np.argsort(known)
    at = np.searchsorted(known[order], strings).clip(0, known.size - 1)
    found = known[order][at] == strings
    return np.where(found, order[at], known.size).astype(np.intp)


def slice_rows(
    values: npt.ArrayLike, top: tuple[str, ...]
) -> list[tuple[str, npt.NDArray[np.intp]]]:
    """The rows of each slice of ``top`` and ``_other``, in that order, empty ones left
    out.

    Examples
    --------
    >>> [(v, r.tolist()) for v, r in slice_rows(["b", "a", "z", "a"], ("a", "b", "c"))]
    [('a', [1, 3]), ('b', [0]), ('_other', [2])]
    """
    index = slice_index(values, top)
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(len(top) + 2))
    return [
        (value, order[bounds[code] : bounds[code + 1]])
        for code, value in enumerate((*top, OTHER_SEGMENT))
        if bounds[code + 1] > bounds[code]
    ]


def segment_slices(
    profile: ModelProfile, segments: Mapping[str, npt.ArrayLike], n: int
) -> list[tuple[str, str, npt.NDArray[np.intp]]]:
    """The rows of each slice of ``profile``'s segments: ``(key, value, row indices)``
    for every slice with at least one of the ``n`` rows, in the profile's order.

    ``segments`` holds each key's value per row (``""`` where the event has none; a key
    left out of ``segments`` puts every row in ``_other``).
    """
    out: list[tuple[str, str, npt.NDArray[np.intp]]] = []
    for key, profiles in profile.segments.items():
        top = tuple(v for v in profiles if v != OTHER_SEGMENT)
        given = segments.get(key)
        values = np.full(n, "") if given is None else np.asarray(given, dtype=str)
        out += [(key, value, rows) for value, rows in slice_rows(values, top) if value in profiles]
    return out


def rebin(whole: FeatureProfile, values: npt.ArrayLike) -> FeatureProfile:
    """The profile of a slice's ``values`` over the whole model's bins (or categories).

    Examples
    --------
    >>> from driftline.detectors.profiles import profile_categorical
    >>> whole = profile_numeric(np.arange(100.0), bins=4)
    >>> part = rebin(whole, np.arange(50.0))
    >>> part.edges == whole.edges, part.reference_counts, part.count
    (True, (0, 24, 25, 1, 0, 0), 50)
    >>> rebin(profile_categorical(["a", "b", "b"]), ["a"]).reference_counts
    (0, 1, 0)
    """
    if isinstance(whole, NumericProfile):
        own = profile_numeric(values, name=whole.name)
        counts = whole.histogram(values)
        n = np.asarray(counts.counts, dtype=np.float64)
        sums = np.asarray(counts.sums if counts.sums is not None else np.zeros(n.size))
        means = np.where(n > 0, sums / np.maximum(n, 1), np.asarray(whole.bin_means))
        return whole.model_copy(
            update={
                "reference_counts": counts.counts,
                "bin_means": tuple(means.tolist()),
                "count": counts.n,
                "null_count": counts.null_count,
                "mean": own.mean,
                "std": own.std,
                "min": own.min,
                "max": own.max,
                "quantile_levels": own.quantile_levels,
                "quantile_values": own.quantile_values,
            }
        )
    assert isinstance(whole, CategoricalProfile)
    counts_c = whole.histogram(values)
    vector = whole.vector(counts_c).astype(np.int64)
    return whole.model_copy(
        update={
            "reference_counts": tuple(vector.tolist()),
            "count": counts_c.n,
            "null_count": counts_c.null_count,
        }
    )


def with_whole_bins(
    part: ModelProfile,
    whole: ModelProfile,
    *,
    features: Mapping[str, npt.ArrayLike],
    predictions: npt.ArrayLike | None = None,
    scores: npt.ArrayLike | None = None,
) -> ModelProfile:
    """A slice's profile ``part`` with the whole model's bins: its columns re-profiled
    by :func:`rebin` over ``whole``'s (its performance and quality references stay)."""
    update: dict[str, object] = {
        "features": {
            name: rebin(fprof, features[name])
            for name, fprof in whole.features.items()
            if name in features
        }
    }
    if whole.prediction is not None and predictions is not None:
        update["prediction"] = rebin(whole.prediction, predictions)
    if whole.score is not None and scores is not None:
        update["score"] = rebin(whole.score, scores)
    return part.model_copy(update=update)
