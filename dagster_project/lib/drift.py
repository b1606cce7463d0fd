"""Population stability index (PSI): how far a score distribution moved between two days.

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

over bins i, with e_i / a_i the share of the expected (reference) / actual values in bin i.
By default bins are quantiles of the *expected* distribution, so each holds about 1/bins of
the reference and the index does not depend on the score's scale. For probabilities, pass
fixed ``edges`` (the drift check uses ten equal-width bins on [0, 1]): calibrated scores are
isotonic step functions with a few dozen distinct values that differ from one day's model to
the next, so quantile cuts collapse onto the ties and a day's steps moving past them read as a
shift (a PSI of 0.4-3.2 between consecutive days was observed with quantile bins). Empty bins
get `eps` before the logarithm (a bin empty on one side would otherwise make PSI infinite).

Usual reading (credit-risk practice, and the thresholds of the drift check):
< 0.1 stable, 0.1-0.25 moderate shift (warn), > 0.25 major shift (fail).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

WARN_PSI = 0.1
FAIL_PSI = 0.25


def _clean(values: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    return a[np.isfinite(a)]


PROBABILITY_EDGES = tuple(np.linspace(0.0, 1.0, 11)[1:-1])  # inner cuts of 10 equal bins


def psi(expected: Iterable[float], actual: Iterable[float], bins: int = 10,
        eps: float = 1e-4, edges: Iterable[float] | None = None) -> float:
    """PSI of `actual` against `expected` (NaN/None dropped); bins at the expected quantiles,
    or at the inner cut points ``edges`` when given. Raises ValueError when either side is
    empty: "no drift" cannot be claimed without data."""
    e, a = _clean(expected), _clean(actual)
    if len(e) == 0 or len(a) == 0:
        raise ValueError(f"psi needs values on both sides (expected {len(e)}, actual {len(a)})")
    if edges is not None:
        cuts = np.unique(np.asarray(list(edges), dtype=float))
    elif bins < 2:
        raise ValueError("bins must be >= 2")
    else:
        # Inner cut points at the expected quantiles; ties (a constant-ish score) collapse bins.
        cuts = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    e_counts = np.bincount(np.searchsorted(cuts, e, side="right"), minlength=len(cuts) + 1)
    a_counts = np.bincount(np.searchsorted(cuts, a, side="right"), minlength=len(cuts) + 1)
    e_share = np.maximum(e_counts / len(e), eps)
    a_share = np.maximum(a_counts / len(a), eps)
    value = float(np.sum((a_share - e_share) * np.log(a_share / e_share)))
    return max(value, 0.0)


def verdict(value: float | None) -> str:
    """'ok', 'warn' or 'fail' for a PSI value; 'n/a' when it could not be computed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value > FAIL_PSI:
        return "fail"
    if value > WARN_PSI:
        return "warn"
    return "ok"


def psi_table_md(values: Mapping[str, float | None], reference: str, current: str,
                 stored: Mapping[str, float | None] | None = None) -> str:
    """Markdown table: one row per target with its PSI and verdict; with ``stored``, a last
    column with the PSI of the stored scores (the model refit included), shown, not judged."""
    title = (f"PSI of each score on {current} against {reference} "
             f"(warn > {WARN_PSI}, fail > {FAIL_PSI})")
    head, rule = "| target | PSI | verdict |", "| --- | --- | --- |"
    if stored is not None:
        title += (": the population's shift, both days scored by this partition's model. "
                  "Last column: the stored scores' PSI, the nightly model refit included "
                  "(no verdict)")
        head, rule = head + " stored scores' PSI |", rule + " --- |"
    lines = [title, "", head, rule]
    for target in sorted(values):
        v = values[target]
        line = f"| {target} | {'' if v is None else f'{v:.4f}'} | {verdict(v)} |"
        if stored is not None:
            w = stored.get(target)
            line += f" {'' if w is None else f'{w:.4f}'} |"
        lines.append(line)
    return "\n".join(lines)
