"""Test helpers over the store's window aggregation: the aggregates of windows as plain
:class:`~driftline.detectors.evaluate.WindowData` (what the monitor reads through
:func:`~driftline.store.aggregates.windows_aggregates`, without the row counts)."""

from __future__ import annotations

from collections.abc import Iterable

from driftline.detectors.evaluate import WindowData
from driftline.detectors.profiles import ModelProfile

from driftline.store.aggregates import windows_aggregates
from driftline.store.backend import Store


def windows_data(
    store: Store,
    profile: ModelProfile,
    *,
    model_id: str,
    model_version: str,
    starts: Iterable[float],
    size: float,
    positive_label: str = "1",
    task: str | None = None,
) -> dict[float, WindowData]:
    """Aggregates of many windows of one model version, each window in one query pass.

    Parameters
    ----------
    store
        The ClickHouse store holding ``predictions`` and ``feedback``.
    profile
        Reference profile: its features, frozen bins, prediction and score profiles.
    model_id, model_version
        The model version whose rows are aggregated.
    starts
        Window starts, epoch seconds, on one grid (each differs from the others by a
        multiple of ``size``).
    size
        Window length, seconds; window ``s`` is ``[s, s + size)``.
    positive_label
        Positive class of a binary classifier (canonical text).
    task
        ``binary_classification``, ``multiclass`` or ``regression``; the profile's task
        when ``None``.

    Returns
    -------
    dict of float to WindowData
        One entry per distinct start, empty windows included (``n_events == 0``).
    """
    found = windows_aggregates(
        store,
        profile,
        model_id=model_id,
        model_version=model_version,
        starts=starts,
        size=size,
        positive_label=positive_label,
        task=task,
    )
    return {start: aggregate.data for start, aggregate in found.items()}


def window_data(
    store: Store,
    profile: ModelProfile,
    *,
    model_id: str,
    model_version: str,
    start: float,
    end: float,
    positive_label: str = "1",
    task: str | None = None,
) -> WindowData:
    """Aggregates of one window ``[start, end)`` of one model version, computed in ClickHouse.

    Equal to :func:`~driftline.detectors.evaluate.aggregate_window` on the window's raw
    arrays (float sums up to summation order); see the module docstring for how rows,
    nulls, categories, scores and labels are read.

    Parameters
    ----------
    store
        The ClickHouse store holding ``predictions`` and ``feedback``.
    profile
        Reference profile: its features, frozen bins, prediction and score profiles.
    model_id, model_version
        The model version whose rows are aggregated.
    start, end
        Window bounds, epoch seconds (``end`` excluded).
    positive_label
        Positive class of a binary classifier (canonical text).
    task
        ``binary_classification``, ``multiclass`` or ``regression``; the profile's task
        when ``None``.

    Returns
    -------
    WindowData
        The window's aggregates (``n_events == 0`` for an empty window).
    """
    if not end > start:
        raise ValueError("a window ends after it starts")
    return windows_data(
        store,
        profile,
        model_id=model_id,
        model_version=model_version,
        starts=[start],
        size=end - start,
        positive_label=positive_label,
        task=task,
    )[float(start)]
