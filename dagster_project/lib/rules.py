"""Layer 1: business states (lifecycle, AOV tier, category family) with learned thresholds.

The thresholds come from the data of the partition, not from constants:

- ``lapsing_days``   = the ``lapsing_quantile`` (default 0.75) of the inter-purchase intervals:
  a customer whose silence is longer than 3 in 4 of the gaps customers usually leave between
  orders is lapsing.
- ``churned_days``   = the ``churned_quantile`` (default 0.95) of the same intervals: silence
  longer than 19 in 20 usual gaps is churn.
- ``new_window_days`` = the ``new_window_quantile`` (default 0.5, the median) of the intervals:
  a one-order customer stays "new" while still inside the typical time to a next order.
- ``aov_high_cut``   = the ``aov_quantile`` (default 0.7) of order values: an average order
  value at or above the cut is the "high" tier.

Fallbacks, recorded in ``RuleThresholds.source`` so a reader of the asset metadata sees them:

- fewer than ``min_intervals`` (default 30) usable intervals: lapsing 90, churned 180 and
  new window 30 days (``FALLBACK_*`` below), stated, not learned.
- fewer than ``min_orders`` (default 30) usable order values: no AOV cut (NaN); every
  customer's tier is "none" rather than a tier made up from a constant.

Boundaries (inclusive/exclusive), for ``d = days_since_last_order``:

- prospect: no orders (``orders_lifetime`` 0 or missing, or no last-order date);
- new:      exactly one order and ``days_since_first_order <= new_window_days``;
- active:   ``d <= lapsing_days`` (exactly at the lapsing threshold is still active);
- lapsing:  ``lapsing_days < d <= churned_days`` (exactly at the churned threshold is lapsing);
- churned:  ``d > churned_days``.

The first matching rule wins, in that order. AOV tier: "high" when ``aov >= aov_high_cut``,
"low" below it, "none" for customers without orders or when no cut could be learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

LIFECYCLE_STATES: tuple[str, ...] = ("prospect", "new", "active", "lapsing", "churned")
AOV_TIERS: tuple[str, ...] = ("high", "low", "none")

FALLBACK_LAPSING_DAYS = 90.0
FALLBACK_CHURNED_DAYS = 180.0
FALLBACK_NEW_WINDOW_DAYS = 30.0
# A threshold of 0 days would make every customer with yesterday's order "lapsing"; same-day
# repeat orders can push low quantiles to 0, so the day thresholds are floored at one day.
MIN_THRESHOLD_DAYS = 1.0


@dataclass(frozen=True)
class RuleThresholds:
    lapsing_days: float
    churned_days: float
    new_window_days: float
    aov_high_cut: float  # NaN when no cut could be learned
    lapsing_quantile: float
    churned_quantile: float
    new_window_quantile: float
    aov_quantile: float
    n_intervals: int
    n_orders: int
    source: str  # "learned", or which thresholds fell back and why

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # JSON has no NaN: an absent cut is written as null.
        if not np.isfinite(d["aov_high_cut"]):
            d["aov_high_cut"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuleThresholds:
        d = dict(d)
        if d.get("aov_high_cut") is None:
            d["aov_high_cut"] = float("nan")
        return cls(**d)


def _finite_nonneg(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v) & (v >= 0)]


def learn_thresholds(
    interorder_days: np.ndarray,
    order_values: np.ndarray,
    min_orders: int = 30,
    *,
    min_intervals: int = 30,
    lapsing_quantile: float = 0.75,
    churned_quantile: float = 0.95,
    new_window_quantile: float = 0.5,
    aov_quantile: float = 0.7,
) -> RuleThresholds:
    """Learn the state thresholds from inter-purchase intervals (days) and order values.

    NaN, infinite and negative inputs are ignored (a negative interval or value is bad
    data, not a short gap). See the module docstring for the rules and the fallbacks.
    """
    if not 0 < lapsing_quantile < churned_quantile < 1:
        raise ValueError(
            f"need 0 < lapsing_quantile < churned_quantile < 1, got "
            f"{lapsing_quantile} and {churned_quantile}"
        )
    for name, q in (("new_window_quantile", new_window_quantile), ("aov_quantile", aov_quantile)):
        if not 0 < q < 1:
            raise ValueError(f"{name} must be in (0, 1), got {q}")

    intervals = _finite_nonneg(interorder_days)
    values = _finite_nonneg(order_values)
    notes: list[str] = []

    if intervals.size >= min_intervals:
        lapsing, churned, new_window = (
            max(float(np.quantile(intervals, q)), MIN_THRESHOLD_DAYS)
            for q in (lapsing_quantile, churned_quantile, new_window_quantile)
        )
        # Quantiles are monotone, but the floor can make them equal; churn must not come
        # before lapsing.
        churned = max(churned, lapsing)
    else:
        lapsing, churned, new_window = (
            FALLBACK_LAPSING_DAYS,
            FALLBACK_CHURNED_DAYS,
            FALLBACK_NEW_WINDOW_DAYS,
        )
        notes.append(
            f"day thresholds: fallback {lapsing:g}/{churned:g}/{new_window:g} days "
            f"(lapsing/churned/new) because only {intervals.size} intervals "
            f"(< {min_intervals})"
        )

    if values.size >= min_orders:
        aov_cut = float(np.quantile(values, aov_quantile))
    else:
        aov_cut = float("nan")
        notes.append(
            f"aov tier: no cut (every tier 'none') because only {values.size} order values "
            f"(< {min_orders})"
        )

    return RuleThresholds(
        lapsing_days=lapsing,
        churned_days=churned,
        new_window_days=new_window,
        aov_high_cut=aov_cut,
        lapsing_quantile=lapsing_quantile,
        churned_quantile=churned_quantile,
        new_window_quantile=new_window_quantile,
        aov_quantile=aov_quantile,
        n_intervals=int(intervals.size),
        n_orders=int(values.size),
        source="; ".join(notes) if notes else "learned",
    )


REQUIRED_COLUMNS = (
    "customer_id",
    "orders_lifetime",
    "days_since_last_order",
    "days_since_first_order",
    "aov_lifetime",
)


def assign_states(features: pd.DataFrame, th: RuleThresholds) -> pd.DataFrame:
    """One row per input row: lifecycle state, AOV tier, category family and the inputs used."""
    missing = [c for c in REQUIRED_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(f"assign_states: missing input columns {missing}")

    orders = pd.to_numeric(features["orders_lifetime"]).to_numpy(dtype=float, na_value=np.nan)
    d_last = pd.to_numeric(features["days_since_last_order"]).to_numpy(
        dtype=float, na_value=np.nan
    )
    d_first = pd.to_numeric(features["days_since_first_order"]).to_numpy(
        dtype=float, na_value=np.nan
    )
    aov = pd.to_numeric(features["aov_lifetime"]).to_numpy(dtype=float, na_value=np.nan)

    no_orders = ~(orders > 0) | np.isnan(d_last)
    lifecycle = np.select(
        [
            no_orders,
            (orders == 1) & (d_first <= th.new_window_days),
            d_last <= th.lapsing_days,
            d_last <= th.churned_days,
        ],
        ["prospect", "new", "active", "lapsing"],
        default="churned",
    )

    if np.isfinite(th.aov_high_cut):
        aov_tier = np.select(
            [no_orders | np.isnan(aov), aov >= th.aov_high_cut],
            ["none", "high"],
            default="low",
        )
    else:
        aov_tier = np.full(len(features), "none", dtype=object)

    if "top_category" in features.columns:
        family = features["top_category"].astype(object).where(
            features["top_category"].notna(), "unknown"
        )
        family = family.to_numpy(dtype=object)
    else:
        family = np.full(len(features), "unknown", dtype=object)

    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "lifecycle_state": lifecycle.astype(object),
            "aov_tier": np.asarray(aov_tier, dtype=object),
            "category_family": family,
            "days_since_last_order": d_last,
            "days_since_first_order": d_first,
            "orders_lifetime": orders,
            "aov_lifetime": aov,
        }
    )


def state_counts(states: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Customers per lifecycle state and per AOV tier, every category listed (zeros too)."""
    lifecycle = states["lifecycle_state"].value_counts()
    tiers = states["aov_tier"].value_counts()
    return {
        "lifecycle_state": {s: int(lifecycle.get(s, 0)) for s in LIFECYCLE_STATES},
        "aov_tier": {t: int(tiers.get(t, 0)) for t in AOV_TIERS},
    }
