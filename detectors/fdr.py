"""False-discovery-rate control across the features of a window (Benjamini-Hochberg).

With thousands of events per window every test is significant for a negligible shift,
and with many features some test is significant by chance. The evaluator therefore
calls a feature drifted only when its effect size passes the threshold *and* its
p-value survives Benjamini-Hochberg at level ``fdr`` across the window's features.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["benjamini_hochberg", "bh_reject"]


def benjamini_hochberg(p_values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (q-values).

    Equal to ``scipy.stats.false_discovery_control(p, method="bh")``; NaN entries
    (no test) stay NaN and do not count towards the number of tests.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5]).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = tested.size
    if m == 0:
        return out
    pt = np.clip(p[tested], 0.0, 1.0)
    order = np.argsort(pt, kind="mergesort")
    ranked = pt[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(q, 1.0)
    out[tested] = adjusted
    return out


def bh_reject(p_values: npt.ArrayLike, alpha: float) -> npt.NDArray[np.bool_]:
    """Which hypotheses Benjamini-Hochberg rejects at level ``alpha``.

    Entries without a test (NaN) are never rejected.

    Examples
    --------
    >>> bh_reject([0.01, 0.04, 0.03, 0.5], 0.05).tolist()
    [True, False, False, False]
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    q = benjamini_hochberg(p_values)
    return np.asarray(np.nan_to_num(q, nan=np.inf) <= alpha, dtype=bool)
