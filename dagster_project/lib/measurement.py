"""Measurement (DESIGN §10): holdouts and incrementality, response curves and marginal ROI,
fatigue, segment migration and the 30-day forecast.

Pure functions over small pandas frames; no Dagster import. The heavy lifting (one row per
activation with its outcomes, daily spend and attributed orders per channel, exposures per
frequency bucket) is done in DuckDB by the SQL at the bottom of this module, run with bound
parameters by the measurement assets, and by the segments asset for the organic inevitables'
holdout evidence (``organic_inevitable_evidence``). The activation log is the union of the
pipeline's published audience history and the brand's source log (``activation_log_sql``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from dagster_project.lib.warehouse import table_exists

HOLDOUT_SALT = "ds-holdout-v1"
HOLDOUT_SHARE = 0.10


def holdout_assignment(customer_ids: Iterable[str], segment: str | Iterable[str],
                       share: float = HOLDOUT_SHARE, salt: str = HOLDOUT_SALT) -> np.ndarray:
    """True where the customer is in the segment's holdout.

    u = first 8 bytes of sha256("<salt>|<segment>|<customer_id>") read as an integer / 2**64,
    holdout when u < share. The same customer and segment get the same answer every night
    and on every machine (no RNG state, no ordering dependence); changing the salt draws a
    new, independent holdout. ``segment`` is one name or one per customer.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"holdout share must be in [0, 1], got {share}")
    ids = [str(x) for x in customer_ids]
    segs = [segment] * len(ids) if isinstance(segment, str) else [str(s) for s in segment]
    if len(segs) != len(ids):
        raise ValueError("segment must be one name or one per customer")
    threshold = int(share * 2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(f"{salt}|{s}|{c}".encode()).digest()[:8], "big") < threshold
         for c, s in zip(ids, segs, strict=True)),
        dtype=bool, count=len(ids))


Z95 = float(stats.norm.ppf(0.975))
GROUPS = ("treated", "holdout")
NOT_ENOUGH = "not enough data yet"


# --------------------------------------------------------------------------- incrementality
def _cluster_mean(values: np.ndarray, clusters: np.ndarray) -> tuple[float, float, int]:
    """Mean of ``values`` and its variance, robust to rows of the same cluster (customer)
    being correlated: a customer activated in several waves counts as one independent unit.

    Ratio estimator mean = sum(y) / n; var = C / (C - 1) * sum_c (s_c - mean * n_c)^2 / n^2
    over clusters c with sums s_c and sizes n_c. With one row per cluster this is the usual
    sample variance / n."""
    f = pd.DataFrame({"y": values, "c": clusters}).groupby("c", sort=False)["y"].agg(["sum", "size"])
    n, k = float(f["size"].sum()), len(f)
    mean = float(f["sum"].sum()) / n
    if k < 2:
        return mean, float("nan"), k
    resid = f["sum"].to_numpy() - mean * f["size"].to_numpy()
    return mean, k / (k - 1) * float((resid**2).sum()) / n**2, k


def _diff_ci(t: tuple[float, float, int], h: tuple[float, float, int], df_based: bool) -> tuple[float, float, float]:
    """Difference of two independent means with a 95% interval: normal quantile, or Student t
    with Welch-Satterthwaite degrees of freedom over clusters when ``df_based``."""
    (m1, v1, k1), (m0, v0, k0) = t, h
    se = math.sqrt(v1 + v0)
    q = Z95
    if df_based and se > 0:
        df = (v1 + v0) ** 2 / (v1**2 / max(k1 - 1, 1) + v0**2 / max(k0 - 1, 1))
        q = float(stats.t.ppf(0.975, df))
    d = m1 - m0
    return d, d - q * se, d + q * se


INCREMENTALITY_COLUMNS = [
    "segment", "status", "n_treated", "n_holdout", "n_incomplete", "window_days",
    "conversion_treated", "conversion_holdout", "conversion_diff", "conversion_diff_lo",
    "conversion_diff_hi", "relative_lift", "relative_lift_lo", "relative_lift_hi",
    "revenue_per_member_treated", "revenue_per_member_holdout", "revenue_diff",
    "revenue_diff_lo", "revenue_diff_hi", "significant", "incremental_orders"]


def incrementality(log: pd.DataFrame, outcomes: pd.DataFrame | None = None, window_days: int = 30,
                   min_per_group: int = 50, as_of=None, first_activation_only: bool = True) -> pd.DataFrame:
    """Treated vs holdout per segment, over activations whose window has ended by ``as_of``.

    ``log``: one row per activated member (activation_date, customer_id, segment, test_group
    in {treated, holdout}), e.g. from ``activation_log_sql``. ``outcomes``: one row per
    member with ``orders`` and ``revenue`` in the window (activation_date, activation_date +
    window_days]; members without a row bought nothing. Without ``outcomes`` the columns must
    already be in ``log`` (e.g. from ``with_outcomes_sql``, as ``measure_incrementality`` does).

    A member converts when orders >= 1. Per segment: conversion rate and revenue per member
    for both groups; difference with a 95% normal-approximation interval (difference of two
    proportions, unpooled); relative lift p_t / p_h - 1 with a delta-method interval on the
    log ratio; revenue difference with a Welch (t, Satterthwaite) interval. The holdout is
    stable per customer, so a customer activated in several waves is in the same group each
    time: variances are clustered by customer (``_cluster_mean``), otherwise repeated waves
    would make the intervals look tighter than the evidence is. With
    ``first_activation_only`` (default) each customer counts once per segment, at their first
    activation in the log: a later activation of the same customer is selected by what the
    earlier one did (a treated customer who bought may have moved to another segment or
    lapsed), so only the first is a clean randomised comparison. Segments with fewer than
    ``min_per_group`` complete windows in either group get status "not enough data yet" and
    no estimate.
    """
    keys = ["activation_date", "customer_id", "segment"]
    m = log.drop_duplicates(keys + ["test_group"]).copy()
    if outcomes is not None:
        o = outcomes[keys + ["orders", "revenue"]].copy()
        o["activation_date"] = pd.to_datetime(o["activation_date"])
        m["activation_date"] = pd.to_datetime(m["activation_date"])
        m = m.drop(columns=["orders", "revenue"], errors="ignore").merge(o, on=keys, how="left")
    m["activation_date"] = pd.to_datetime(m["activation_date"])
    m["orders"] = pd.to_numeric(m["orders"]).fillna(0)
    m["revenue"] = pd.to_numeric(m["revenue"]).fillna(0.0).astype(float)
    conflict = m.duplicated(keys, keep=False)  # a member in both groups: measured in neither
    m = m[~conflict & m["test_group"].isin(GROUPS)]
    if first_activation_only:
        first = m.groupby(["customer_id", "segment"])["activation_date"].transform("min")
        m = m[m["activation_date"] == first]
    if as_of is None:
        complete = pd.Series(True, index=m.index)
    else:
        complete = m["activation_date"] + pd.Timedelta(days=window_days) <= pd.Timestamp(as_of)
    rows = []
    for seg in sorted(m["segment"].unique()):
        g = m[m["segment"] == seg]
        c = g[complete.loc[g.index]]
        t, h = c[c["test_group"] == "treated"], c[c["test_group"] == "holdout"]
        row = {"segment": seg, "n_treated": len(t), "n_holdout": len(h),
               "n_incomplete": int((~complete.loc[g.index]).sum()), "window_days": window_days}
        if len(t) < min_per_group or len(h) < min_per_group:
            why = (f"{NOT_ENOUGH}: {len(t)} treated and {len(h)} holdout members with a complete "
                   f"{window_days}-day window, need {min_per_group} in each")
            if row["n_incomplete"]:
                why += f" ({row['n_incomplete']} windows still open)"
            rows.append({**row, "status": why})
            continue
        ct = _cluster_mean((t["orders"] > 0).to_numpy(float), t["customer_id"].to_numpy())
        ch = _cluster_mean((h["orders"] > 0).to_numpy(float), h["customer_id"].to_numpy())
        (pt, vt, _), (ph, vh, _) = ct, ch
        diff, lo, hi = _diff_ci(ct, ch, df_based=False)
        lift = lift_lo = lift_hi = np.nan
        if pt > 0 and ph > 0:
            lr = math.log(pt / ph)
            se_lr = math.sqrt(vt / pt**2 + vh / ph**2)  # delta method on log(p_t / p_h)
            lift, lift_lo, lift_hi = (math.exp(lr) - 1, math.exp(lr - Z95 * se_lr) - 1,
                                      math.exp(lr + Z95 * se_lr) - 1)
        rd, rlo, rhi = _diff_ci(_cluster_mean(t["revenue"].to_numpy(float), t["customer_id"].to_numpy()),
                                _cluster_mean(h["revenue"].to_numpy(float), h["customer_id"].to_numpy()),
                                df_based=True)
        rows.append({
            **row, "status": "ok",
            "conversion_treated": pt, "conversion_holdout": ph,
            "conversion_diff": diff, "conversion_diff_lo": lo, "conversion_diff_hi": hi,
            "relative_lift": lift, "relative_lift_lo": lift_lo, "relative_lift_hi": lift_hi,
            "revenue_per_member_treated": float(t["revenue"].mean()),
            "revenue_per_member_holdout": float(h["revenue"].mean()),
            "revenue_diff": rd, "revenue_diff_lo": rlo, "revenue_diff_hi": rhi,
            "significant": bool(lo > 0 or hi < 0),
            "incremental_orders": float((t["orders"].mean() - h["orders"].mean()) * len(t)),
        })
    return pd.DataFrame(rows).reindex(columns=INCREMENTALITY_COLUMNS)


# --------------------------------------------------------------------------- response curves
SPEND_DOES_NOT_VARY = "spend does not vary enough to fit"


def hill(x, a, k, s):
    """Saturating Hill curve a * x^s / (k^s + x^s): a = ceiling, k = half-saturation spend."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    return a * x**s / (k**s + x**s)


def hill_slope(x, a, k, s):
    x = np.maximum(np.asarray(x, dtype=float), 1e-12)
    return a * s * k**s * x ** (s - 1) / (k**s + x**s) ** 2


def exp_saturation(x, a, k):
    """a * (1 - exp(-x / k)): a = ceiling, k = spend scale."""
    return a * -np.expm1(-np.maximum(np.asarray(x, dtype=float), 0.0) / k)


def exp_saturation_slope(x, a, k):
    return a / k * np.exp(-np.maximum(np.asarray(x, dtype=float), 0.0) / k)


CURVES = {"hill": (hill, hill_slope, ("a", "k", "s")),
          "exponential": (exp_saturation, exp_saturation_slope, ("a", "k"))}


@dataclass(frozen=True)
class CurveFit:
    """A fitted spend -> outcome curve of one channel (optionally one segment)."""

    channel: str
    segment: str | None
    status: str  # "ok" or why there is no curve
    kind: str
    params: dict[str, float] = field(default_factory=dict)
    r2: float | None = None
    n_days: int = 0
    spend_cv: float | None = None
    current_spend: float | None = None  # mean daily spend over the recent days
    spend_min: float | None = None
    spend_max: float | None = None
    value_per_outcome: float = 1.0
    outcome_at_current: float | None = None
    marginal_outcome: float | None = None  # d outcome / d spend at current spend
    marginal_roi: float | None = None  # marginal_outcome * value_per_outcome
    average_roi: float | None = None  # outcome_at_current * value_per_outcome / current_spend
    # the fitted parameters' covariance (curve_fit's), in params order; not stored in tables
    cov: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def predict(self, spend) -> np.ndarray:
        if not self.ok:
            raise ValueError(f"no curve for {self.channel}: {self.status}")
        return CURVES[self.kind][0](spend, **self.params)

    def slope(self, spend) -> np.ndarray:
        if not self.ok:
            raise ValueError(f"no curve for {self.channel}: {self.status}")
        return CURVES[self.kind][1](spend, **self.params)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update({f"param_{k}": v for k, v in self.params.items()})
        del d["params"], d["cov"]
        return d


def fit_response_curve(spend, outcome, *, channel: str = "", segment: str | None = None,
                       value_per_outcome: float = 1.0, kind: str = "hill", min_cv: float = 0.10,
                       min_days: int = 28, recent_days: int = 28) -> CurveFit:
    """Fit outcome ~ curve(spend) over daily points (in date order) by least squares.

    A grid over the shape parameters with the ceiling solved in closed form gives the start,
    then ``scipy.optimize.curve_fit`` refines within bounds: half-saturation k between 5% of
    the median and 50x the largest spend, Hill shape s in [0.5, 3]. Marginal ROI is the
    curve's slope at the current spend (mean of the last ``recent_days`` days) times the value
    of one outcome: the revenue the next unit of spend brings. A coefficient of variation of
    spend below ``min_cv`` leaves the curve unidentified: status "spend does not vary enough
    to fit", no numbers.
    """
    if kind not in CURVES:
        raise ValueError(f"kind must be one of {sorted(CURVES)}")
    x = np.asarray(spend, dtype=float)
    y = np.asarray(outcome, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    base = {"channel": channel, "segment": segment, "kind": kind, "n_days": len(x),
            "value_per_outcome": float(value_per_outcome)}
    if len(x) < min_days:
        return CurveFit(status=f"{NOT_ENOUGH}: {len(x)} days of spend, need {min_days}", **base)
    mean = x.mean()
    cv = float(x.std(ddof=1) / mean) if mean > 0 else 0.0
    base.update(spend_cv=cv, current_spend=float(x[-recent_days:].mean()),
                spend_min=float(x.min()), spend_max=float(x.max()))
    if cv < min_cv:
        return CurveFit(status=f"{SPEND_DOES_NOT_VARY} (coefficient of variation {cv:.3f} < {min_cv})",
                        **base)
    if y.sum() <= 0:
        return CurveFit(status="no outcomes attributed to this channel", **base)
    f, df, names = CURVES[kind]
    med = float(np.median(x[x > 0])) if (x > 0).any() else mean
    k_lo, k_hi = 0.05 * med, 50.0 * x.max()
    ks = med * np.geomspace(0.1, 20, 25)
    ss = np.linspace(0.6, 2.8, 12) if kind == "hill" else [None]
    best = None
    for k in ks:
        for s in ss:
            g = f(x, 1.0, k, s) if s is not None else f(x, 1.0, k)
            gg = float(g @ g)
            if gg <= 0:
                continue
            a = max(float(g @ y) / gg, 1e-12)
            sse = float(((y - a * g) ** 2).sum())
            if best is None or sse < best[0]:
                best = (sse, [a, k] + ([s] if s is not None else []))
    p0 = best[1]
    a_hi = max(1e3 * y.max(), 10 * p0[0])
    lo = [0.0, k_lo] + ([0.5] if kind == "hill" else [])
    hi = [a_hi, k_hi] + ([3.0] if kind == "hill" else [])
    p0 = np.clip(p0, np.array(lo) + 1e-12, np.array(hi) - 1e-12)
    try:
        popt, pcov = optimize.curve_fit(f, x, y, p0=p0, bounds=(lo, hi), maxfev=20000)
    except (RuntimeError, optimize.OptimizeWarning) as exc:  # no convergence: say so, no numbers
        return CurveFit(status=f"fit failed: {exc}", **base)
    params = {n: float(v) for n, v in zip(names, popt, strict=True)}
    pred = f(x, **params)
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else None
    cur = base["current_spend"]
    at_cur = float(f(cur, **params))
    slope = float(df(cur, **params))
    cov = tuple(map(tuple, np.asarray(pcov, dtype=float))) if np.all(np.isfinite(pcov)) else None
    return CurveFit(status="ok", params=params, r2=r2, outcome_at_current=at_cur, cov=cov,
                    marginal_outcome=slope, marginal_roi=slope * value_per_outcome,
                    average_roi=at_cur * value_per_outcome / cur if cur > 0 else None, **base)


def fit_response_curves(daily: pd.DataFrame, value_per_outcome: float | Mapping[str, float] = 1.0,
                        by: tuple[str, ...] = ("channel",), **kw) -> list[CurveFit]:
    """One curve per group of ``daily`` (columns: date, spend, outcome and the ``by`` columns,
    e.g. channel or segment + channel), days in date order."""
    fits = []
    for key, g in daily.sort_values("date").groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        labels = dict(zip(by, key, strict=True))
        ch = str(labels.get("channel", ""))
        v = value_per_outcome.get(ch, np.nan) if isinstance(value_per_outcome, Mapping) else value_per_outcome
        fits.append(fit_response_curve(g["spend"], g["outcome"], channel=ch,
                                       segment=labels.get("segment"), value_per_outcome=float(v), **kw))
    return fits


def _shift_value(hi: CurveFit, lo: CurveFit, amount: float) -> tuple[float, float]:
    gain = float(hi.predict(hi.current_spend + amount) - hi.predict(hi.current_spend))
    loss = float(lo.predict(lo.current_spend) - lo.predict(max(lo.current_spend - amount, 0.0)))
    return gain - loss, gain * hi.value_per_outcome - loss * lo.value_per_outcome


def budget_shift(fits: Iterable[CurveFit], fraction: float = 0.10,
                 min_r2: float | None = None, n_draws: int = 2000, seed: int = 0) -> dict:
    """Move ``fraction`` of the lowest-marginal-ROI channel's daily spend to the highest one.

    Only channels with a fitted curve take part (per segment when the fits carry one; the
    channel-level fits otherwise), and with ``min_r2`` only those whose curve explains that
    share of their daily outcomes. R² is reported, not a gate by default: a saturated
    channel's flat curve explains little of its day-to-day noise (R² 0.15 on a correct fit)
    while its marginal return, near zero, is well determined. The expected effect is read
    off the two curves: what the receiving channel gains minus what the giving channel
    loses, valued per outcome.

    Its uncertainty: ``n_draws`` parameter sets are drawn for each curve from its fit's
    estimated covariance (the fit's own uncertainty, normal approximation) and the move
    valued on each pair, for a 90% interval. An interval that includes zero, or curves whose
    uncertainty could not be estimated, withhold the recommendation, saying why.
    """
    fits = list(fits)
    usable = [f for f in fits if f.ok and f.marginal_roi is not None
              and np.isfinite(f.marginal_roi)
              and (min_r2 is None or (f.r2 is not None and f.r2 >= min_r2))]
    skipped = {f.channel: f.status for f in fits if not f.ok}
    skipped.update({f.channel: (
        "no marginal ROI (no value per outcome)" if f.marginal_roi is None
        or not np.isfinite(f.marginal_roi) else
        f"fit explains R² {_r2(f)} of its daily outcomes (< {min_r2}): too weak to advise on")
        for f in fits if f.ok and f not in usable})
    if len(usable) < 2:
        return {"status": "no recommendation: fewer than two channels with a fitted curve"
                          + (f" (R² >= {min_r2})" if min_r2 is not None else ""),
                "skipped": skipped}
    lo = min(usable, key=lambda f: f.marginal_roi)
    hi = max(usable, key=lambda f: f.marginal_roi)
    amount = fraction * lo.current_spend
    change, value = _shift_value(hi, lo, amount)
    out = {
        "from_channel": lo.channel, "to_channel": hi.channel,
        "segment": hi.segment if hi.segment == lo.segment else None,
        "fraction": fraction, "daily_amount": amount,
        "from_marginal_roi": lo.marginal_roi, "to_marginal_roi": hi.marginal_roi,
        "from_r2": lo.r2, "to_r2": hi.r2,
        "expected_daily_outcome_change": change, "expected_daily_value_change": value,
        "skipped": skipped,
    }
    values = _drawn_shift_values(hi, lo, amount, n_draws, seed)
    if values is None:
        return {**out, "status": "no recommendation: the curves' uncertainty could not be "
                                 "estimated (a parameter at its bound or not identified)"}
    low, high = (float(v) for v in np.percentile(values, [5, 95]))
    out["value_interval_90"] = [low, high]
    if low <= 0 <= high:
        return {**out, "status": (
            f"no recommendation: moving {fraction:.0%} of {lo.channel}'s spend to "
            f"{hi.channel} is expected to change value by {value:+,.2f} per day, but its 90% "
            f"interval [{low:+,.2f}, {high:+,.2f}] includes zero")}
    out.update(status="ok", text=(
        f"Move {fraction:.0%} of {lo.channel}'s daily spend ({amount:,.2f}) to "
        f"{hi.channel}: marginal ROI {lo.marginal_roi:.2f} -> {hi.marginal_roi:.2f}, "
        f"expected {value:+,.2f} per day [90% interval {low:+,.2f} to {high:+,.2f}] (curve "
        f"fits R² {_r2(lo)} and {_r2(hi)})"))
    return out


def stored_budget_shift(roi: pd.DataFrame) -> dict:
    """The advice back from the measurement.marginal_roi rows of one day: its text, and the
    channels it moves money from and to when it is a recommendation."""
    if not len(roi) or "budget_shift" not in roi:
        return {"status": "no recommendation: no channel with spend"}
    text = str(roi["budget_shift"].dropna().iloc[0]) if roi["budget_shift"].notna().any() \
        else "no recommendation"
    roles = roi.dropna(subset=["budget_shift_role"]).set_index("budget_shift_role")["channel"]
    if {"from", "to"} <= set(roles.index):
        return {"status": "ok", "text": text, "from_channel": roles["from"],
                "to_channel": roles["to"]}
    return {"status": text}


def _r2(f: CurveFit) -> str:
    return "n/a" if f.r2 is None else f"{f.r2:.2f}"


def _drawn_shift_values(hi: CurveFit, lo: CurveFit, amount: float, n: int,
                        seed: int) -> np.ndarray | None:
    """The move's daily value under `n` parameter draws of each curve (None without a
    usable covariance)."""
    if hi.cov is None or lo.cov is None:
        return None
    rng = np.random.default_rng(seed)

    def draws(f: CurveFit) -> list[dict] | None:
        names = CURVES[f.kind][2]
        mean = np.array([f.params[k] for k in names])
        cov = np.array(f.cov, dtype=float)
        try:
            sample = rng.multivariate_normal(mean, cov, size=n, check_valid="raise")
        except (ValueError, np.linalg.LinAlgError):
            return None
        sample = np.maximum(sample, 1e-12)  # every parameter is positive
        return {k: sample[:, i] for i, k in enumerate(names)}

    p_hi, p_lo = draws(hi), draws(lo)
    if p_hi is None or p_lo is None:
        return None
    f_hi, f_lo = CURVES[hi.kind][0], CURVES[lo.kind][0]
    gain = f_hi(hi.current_spend + amount, **p_hi) - f_hi(hi.current_spend, **p_hi)
    loss = f_lo(lo.current_spend, **p_lo) - f_lo(max(lo.current_spend - amount, 0.0), **p_lo)
    return gain * hi.value_per_outcome - loss * lo.value_per_outcome


# --------------------------------------------------------------------------- fatigue
def fatigue(exposures_by_freq: pd.DataFrame, knee_share: float = 0.5,
            min_impressions: int = 200, past_knee_share: float = 0.25) -> pd.DataFrame:
    """Response decay with frequency per segment x creative.

    Input (e.g. from ``FATIGUE_SQL``): segment, creative_id, freq_bucket (ordered integer:
    the lower bound of the cumulative-frequency bucket), impressions, clicks and optionally
    conversions. The knee is the first bucket whose CTR falls below ``knee_share`` x the CTR
    of the first bucket (buckets with fewer than ``min_impressions`` impressions are not
    judged). A creative is past its knee when at least ``past_knee_share`` of its
    impressions were delivered at or beyond the knee.
    """
    df = exposures_by_freq.copy()
    if "conversions" not in df:
        df["conversions"] = np.nan
    rows = []
    for (seg, cr), g in df.groupby(["segment", "creative_id"], sort=True):
        g = g.groupby("freq_bucket", sort=True)[["impressions", "clicks", "conversions"]].sum(min_count=1)
        g = g[g["impressions"] > 0]
        judged = g[g["impressions"] >= min_impressions]
        ctr = (judged["clicks"] / judged["impressions"])
        row = {"segment": seg, "creative_id": cr, "impressions": float(g["impressions"].sum()),
               "buckets": len(g), "ctr_by_bucket": {int(k): float(v) for k, v in ctr.items()}}
        if len(judged) < 2 or ctr.iloc[0] <= 0:
            rows.append({**row, "status": f"{NOT_ENOUGH}: fewer than two frequency buckets with "
                                          f"{min_impressions} impressions and clicks in the first",
                         "past_knee": False})
            continue
        below = ctr[ctr < knee_share * ctr.iloc[0]]
        knee = int(below.index[0]) if len(below) else None
        share = float(g.loc[g.index >= knee, "impressions"].sum() / g["impressions"].sum()) if knee else 0.0
        conv = judged["conversions"] / judged["impressions"]
        rows.append({**row, "status": "ok", "first_ctr": float(ctr.iloc[0]),
                     "last_ctr": float(ctr.iloc[-1]), "knee_frequency": knee,
                     "share_impressions_past_knee": share,
                     "first_conversion_rate": float(conv.iloc[0]) if conv.notna().any() else np.nan,
                     "past_knee": bool(knee is not None and share >= past_knee_share)})
    cols = ["segment", "creative_id", "status", "impressions", "buckets", "first_ctr", "last_ctr",
            "knee_frequency", "share_impressions_past_knee", "first_conversion_rate", "past_knee",
            "ctr_by_bucket"]
    return pd.DataFrame(rows).reindex(columns=cols)


# --------------------------------------------------------------------------- migration
NEW, GONE = "new", "gone"


def migration(prev: pd.DataFrame, curr: pd.DataFrame) -> dict:
    """Transitions between two partitions' primary segments (customer_id, segment each).

    A customer only in ``curr`` comes from "new", one only in ``prev`` goes to "gone". The
    matrix rows (from) sum to the previous partition's segment counts plus the new customers,
    the columns (to) to the current counts plus the gone ones.
    """
    for name, f in (("prev", prev), ("curr", curr)):
        if f["customer_id"].duplicated().any():
            raise ValueError(f"{name}: a customer appears twice (one primary segment each)")
    m = prev[["customer_id", "segment"]].merge(curr[["customer_id", "segment"]], on="customer_id",
                                               how="outer", suffixes=("_from", "_to"))
    m["segment_from"] = m["segment_from"].fillna(NEW)
    m["segment_to"] = m["segment_to"].fillna(GONE)
    segs = sorted(set(prev["segment"]) | set(curr["segment"]))
    counts = pd.crosstab(m["segment_from"], m["segment_to"]).reindex(
        index=segs + [NEW], columns=segs + [GONE], fill_value=0).astype(int)
    rates = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    both = m[(m["segment_from"] != NEW) & (m["segment_to"] != GONE)]
    long = (m.groupby(["segment_from", "segment_to"]).size().rename("customers").reset_index())
    return {"counts": counts, "rates": rates, "long": long, "n_prev": len(prev), "n_curr": len(curr),
            "n_new": int((m["segment_from"] == NEW).sum()), "n_gone": int((m["segment_to"] == GONE).sum()),
            "stayed_share": float((both["segment_from"] == both["segment_to"]).mean()) if len(both) else np.nan}


# --------------------------------------------------------------------------- forecast
FORECAST_FORMULA = (
    "expected orders_i = p_purchase_30d_i x orders per buyer (segment mean of orders_30d among "
    "customers with >= 1 order in the last 30 days; overall mean, then 1, as fallbacks); "
    "revenue_i = expected orders_i x aov_lifetime_i; margin_i = expected orders_i x "
    "margin_per_order_365d_i; a missing value per customer falls back to its segment's median, "
    "then the overall median, then 0 (stated in the output)"
)


def forecast(scores_frame: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Expected orders, revenue and contribution margin per segment for the next 30 days.

    ``scores_frame``: customer_id, segment, p_purchase_30d. ``features``: customer_id,
    aov_lifetime, margin_per_order_365d, orders_30d. See FORECAST_FORMULA.
    """
    need = {"customer_id", "segment", "p_purchase_30d"}
    if missing := need - set(scores_frame.columns):
        raise ValueError(f"scores_frame lacks {sorted(missing)}")
    f = features.reindex(columns=["customer_id", "aov_lifetime", "margin_per_order_365d", "orders_30d"])
    d = scores_frame[list(need)].merge(f, on="customer_id", how="left")
    for c in ("aov_lifetime", "margin_per_order_365d", "orders_30d", "p_purchase_30d"):
        d[c] = pd.to_numeric(d[c], errors="coerce").astype(float)
    buyers = d[d["orders_30d"] >= 1]
    overall_opb = float(buyers["orders_30d"].mean()) if len(buyers) else 1.0
    opb = buyers.groupby("segment")["orders_30d"].mean()
    d["orders_per_buyer"] = d["segment"].map(opb).fillna(overall_opb)
    fallbacks = {}
    for c in ("aov_lifetime", "margin_per_order_365d"):
        seg_med = d.groupby("segment")[c].median()
        overall = d[c].median()
        filled = d[c].fillna(d["segment"].map(seg_med)).fillna(overall if pd.notna(overall) else 0.0)
        fallbacks[c] = d[c].isna()
        d[c] = filled
    d["expected_orders"] = d["p_purchase_30d"] * d["orders_per_buyer"]
    d["expected_revenue"] = d["expected_orders"] * d["aov_lifetime"]
    d["expected_margin"] = d["expected_orders"] * d["margin_per_order_365d"]
    d["value_fallback"] = fallbacks["aov_lifetime"] | fallbacks["margin_per_order_365d"]
    out = d.groupby("segment", sort=True).agg(
        customers=("customer_id", "size"), expected_buyers=("p_purchase_30d", "sum"),
        orders_per_buyer=("orders_per_buyer", "mean"), expected_orders=("expected_orders", "sum"),
        expected_revenue=("expected_revenue", "sum"), expected_margin=("expected_margin", "sum"),
        customers_with_value_fallback=("value_fallback", "sum")).reset_index()
    out["revenue_per_customer"] = out["expected_revenue"] / out["customers"]
    out["horizon_days"] = 30
    return out


# --------------------------------------------------------------------------- SQL for the asset
# Set-based in DuckDB, bound parameters only ($as_of DATE, $window_days INTEGER,
# $days INTEGER). Schemas are those of the dbt project (staging, intermediate) and the
# published schema of the publish step.

# The activation log (customer, date, segment, treated or held out) comes from two places:
# the pipeline's own published audience history (each night's activation audiences with their
# hash-based holdout; the audience names are the segment names) and the brand's source log
# (staging.stg_marketing__activation_log; the generator writes one for the past). Either may
# be missing. Where both have the same (activation_date, customer_id, segment) the source row
# wins: it records what was actually sent.
PUBLISHED_LOG = "published.audiences_history"
SOURCE_LOG = "staging.stg_marketing__activation_log"
ACTIVATION_LOG_SOURCES = (PUBLISHED_LOG, SOURCE_LOG)
NO_LOG = "no activation log yet"

# one row per (activation_date, customer_id, segment) and source, up to $as_of (the source log:
# only rows landed by then); a member listed in both groups (bad input) gets test_group
# 'conflict' and is left out of every estimate
_LOG_FILTER = {
    SOURCE_LOG: "activation_date <= $as_of and landed_date <= $as_of",
    PUBLISHED_LOG: "audience_kind = 'activation' and as_of_date <= $as_of",
}
_LOG_SELECT = {
    SOURCE_LOG: f"""
    select
        activation_date,
        customer_id,
        segment,
        case when count(distinct test_group) > 1 then 'conflict' else min(test_group) end as test_group
    from {SOURCE_LOG}
    where {_LOG_FILTER[SOURCE_LOG]}
    group by activation_date, customer_id, segment""",
    PUBLISHED_LOG: f"""
    select
        as_of_date as activation_date,
        customer_id,
        audience as segment,
        case when count(distinct coalesce(holdout, false)) > 1 then 'conflict'
             when bool_or(coalesce(holdout, false)) then 'holdout' else 'treated' end as test_group
    from {PUBLISHED_LOG}
    where {_LOG_FILTER[PUBLISHED_LOG]}
    group by as_of_date, customer_id, audience""",
}
_LOG_CTE = {SOURCE_LOG: "source_log", PUBLISHED_LOG: "published_log"}


def activation_log_sql(sources: Iterable[str]) -> str:
    """SQL of the activation log over the given ``sources`` (a non-empty subset of
    ``ACTIVATION_LOG_SOURCES``): one row per (activation_date, customer_id, segment) with
    test_group (treated, holdout or conflict) and log_source (the relation the row came from).
    A key in both relations is taken from the source log only. Parameter: $as_of."""
    chosen = set(sources)
    if unknown := chosen - set(ACTIVATION_LOG_SOURCES):
        raise ValueError(f"unknown activation log source(s): {sorted(unknown)}")
    if not chosen:
        raise ValueError(f"no activation log source: {NO_LOG}")
    ordered = [s for s in (SOURCE_LOG, PUBLISHED_LOG) if s in chosen]
    ctes = ",\n".join(f"{_LOG_CTE[s]} as ({_LOG_SELECT[s]}\n)" for s in ordered)
    parts = [f"select *, '{s}' as log_source from {_LOG_CTE[s]}" for s in ordered]
    if len(ordered) == 2:  # the published row only where the source log has none
        parts[1] = (f"select p.*, '{PUBLISHED_LOG}' as log_source from published_log as p\n"
                    "anti join source_log as s using (activation_date, customer_id, segment)")
    return f"with {ctes}\n" + "\nunion all\n".join(parts)


def activation_log_sources(con, as_of) -> dict[str, int]:
    """Rows up to ``as_of`` per activation log relation that exists and has any (the raw row
    counts, before deduplication); an empty dict when there is no activation log yet."""
    out = {}
    for source in ACTIVATION_LOG_SOURCES:
        if not table_exists(con, *source.split(".")):
            continue
        n = con.execute(f"select count(*) from {source} where {_LOG_FILTER[source]}",
                        {"as_of": as_of}).fetchone()[0]
        if n:
            out[source] = int(n)
    return out


def with_outcomes_sql(members_sql: str) -> str:
    """Each member row of ``members_sql`` (activation_date, customer_id, segment, ...) with
    ``orders`` and ``revenue``: orders and net revenue (reporting currency) in (activation_date,
    activation_date + window_days], counting only orders visible by as_of (point in time).
    Parameters: $as_of, $window_days (plus those of ``members_sql``)."""
    return f"""
with members as ({members_sql}
)
select
    m.*,
    count(o.order_id) as orders,
    coalesce(sum(o.net_revenue_rc), 0)::double as revenue
from members as m
left join intermediate.int_orders__economics as o
    on o.customer_id = m.customer_id
    and o.order_date > m.activation_date
    and o.order_date <= m.activation_date + $window_days::integer
    and o.order_date <= $as_of
    and o.visible_from <= $as_of
group by all
"""


def measure_incrementality(con, as_of, *, window_days: int = 30, min_per_group: int = 50,
                           segments: Iterable[str] = ()) -> tuple[pd.DataFrame, dict[str, int]]:
    """``incrementality`` per segment over the activation log of every source present by
    ``as_of``, and the rows each source contributed to the log (after a source-log row has
    replaced the published row of the same key). With no log at all: one row per segment of
    ``segments`` with status NO_LOG, and an empty dict."""
    sources = activation_log_sources(con, as_of)
    if not sources:
        inc = pd.DataFrame({"segment": list(segments), "status": NO_LOG, "n_treated": 0,
                            "n_holdout": 0, "n_incomplete": 0, "window_days": window_days})
        return inc.reindex(columns=INCREMENTALITY_COLUMNS), {}
    members = con.execute(with_outcomes_sql(activation_log_sql(sources)),
                          {"as_of": as_of, "window_days": window_days}).df()
    contributed = {s: int((members["log_source"] == s).sum()) for s in ACTIVATION_LOG_SOURCES
                   if s in sources}
    inc = incrementality(members, window_days=window_days, min_per_group=min_per_group,
                         as_of=as_of)
    return inc, contributed


def describe_sources(contributed: Mapping[str, int]) -> str:
    """'published.audiences_history (120 rows) + staging...' or 'none'."""
    return " + ".join(f"{s} ({n:,} rows)" for s, n in contributed.items()) or "none"


# Organic inevitables' holdout evidence: does paid activation move customers who had the
# organic-inevitable history when they were activated? Members: each customer's first
# activation in the log (ties on the day: the first segment by name; its randomised group is
# the customer's group), before $as_of, whose history AT THE ACTIVATION DATE met the rule's
# history conditions (config/segments.yaml exclusions.organic_inevitable), computed like the
# features mart computes them at a cutoff: orders visible by that day (visible_from), order
# day <= that day, fx-missing orders left out; orders_365d = orders of the 365 days up to and
# including that day; unpaid_order_share = share of ALL those visible orders without a paid
# touch (the feature's definition: lifetime, not the last year). The profile is fixed before
# the outcome window starts (the day after the activation), so treated vs holdout within it
# stays a randomised comparison. Parameters: $as_of, $min_orders_365d, $min_unpaid_share.
ORGANIC_SEGMENT = "organic_inevitable"


def organic_profile_members_sql(log_sql: str) -> str:
    """The organic-profile subgroup of ``activation_log_sql``'s log, labelled segment
    ORGANIC_SEGMENT (the activated segment is kept in activated_segment)."""
    return f"""
    with log as ({log_sql}
    ),
    first_activation as (
        select *
        from log
        where activation_date < $as_of
        qualify row_number() over (
            partition by customer_id order by activation_date, segment) = 1
    ),
    history as (
        select
            f.customer_id,
            count(*) filter (where f.activation_date - o.order_date < 365) as orders_365d,
            sum((not o.is_paid_touch)::int) / count(*) as unpaid_order_share
        from first_activation as f
        inner join intermediate.int_orders__economics as o
            on o.customer_id = f.customer_id
            and o.order_date <= f.activation_date
            and o.visible_from <= f.activation_date
            and not o.fx_missing
        group by f.customer_id
    )
    select
        f.activation_date,
        f.customer_id,
        '{ORGANIC_SEGMENT}' as segment,
        f.test_group,
        f.segment as activated_segment,
        f.log_source,
        h.orders_365d,
        h.unpaid_order_share
    from first_activation as f
    inner join history as h using (customer_id)
    where h.orders_365d >= $min_orders_365d::integer
        and h.unpaid_order_share >= $min_unpaid_share::double"""


ORGANIC_EVIDENCE_DEFINITION = (
    "treated vs holdout conversion of customers whose history at their first activation met "
    "the organic-inevitable history conditions (orders in the 365 days up to the activation "
    ">= min_orders_365d, share of their visible orders without a paid touch >= "
    "min_unpaid_share); first activation per customer, window complete by the partition date")


def organic_inevitable_evidence(con, as_of, *, min_orders_365d: float, min_unpaid_share: float,
                                window_days: int = 30, min_per_group: int = 50) -> dict | None:
    """Holdout evidence for the organic_inevitable audience at partition ``as_of`` (only data
    visible by then), for ``exclusions.build_exclusions(holdout_evidence=...)``; None when
    there is no activation log yet.

    ``incrementality`` of the ORGANIC_SEGMENT subgroup (``organic_profile_members_sql``):
    status ("ok" or why not), relative_lift with its 95% interval (lo, hi), n_treated,
    n_holdout, plus n_incomplete, the two conversion rates, the window and the rows per log
    source of the subgroup."""
    sources = activation_log_sources(con, as_of)
    if not sources:
        return None
    sql = with_outcomes_sql(organic_profile_members_sql(activation_log_sql(sources)))
    members = con.execute(sql, {"as_of": as_of, "window_days": window_days,
                                "min_orders_365d": math.ceil(min_orders_365d),
                                "min_unpaid_share": float(min_unpaid_share)}).df()
    inc = incrementality(members, window_days=window_days, min_per_group=min_per_group,
                         as_of=as_of)
    if len(inc):
        r = inc.iloc[0]
    else:  # nobody activated had the profile
        r = pd.Series({"status": (f"{NOT_ENOUGH}: 0 treated and 0 holdout members with a complete "
                                  f"{window_days}-day window, need {min_per_group} in each"),
                       "n_treated": 0, "n_holdout": 0, "n_incomplete": 0})

    def num(key):
        v = r.get(key)
        return None if v is None or pd.isna(v) else float(v)

    return {"status": str(r["status"]), "relative_lift": num("relative_lift"),
            "lo": num("relative_lift_lo"), "hi": num("relative_lift_hi"),
            "n_treated": int(r["n_treated"]), "n_holdout": int(r["n_holdout"]),
            "n_incomplete": int(r["n_incomplete"]),
            "conversion_treated": num("conversion_treated"),
            "conversion_holdout": num("conversion_holdout"), "window_days": window_days,
            "min_per_group": min_per_group,
            "log_sources": {s: int((members["log_source"] == s).sum()) for s in sources},
            "definition": ORGANIC_EVIDENCE_DEFINITION}


# paid web purchases are attributed to the ad channel by utm_source (utm_medium alone cannot
# tell meta from tiktok: both are paid_social)
UTM_SOURCE_CHANNEL = (("facebook", "meta"), ("instagram", "meta"), ("google", "google"),
                      ("tiktok", "tiktok"), ("dv360", "display"))
PAID_MEDIA = ("cpc", "paid_social", "display")

# one row per (date, channel) over the last $days days: spend and paid purchases
CHANNEL_DAILY_SQL = f"""
with days as (
    select unnest(range($as_of::date - ($days::integer - 1), $as_of::date + 1, interval 1 day))::date as date
),
channels as (select distinct channel from staging.stg_ads__spend),
spend as (
    select spend_date as date, channel, sum(spend) as spend
    from staging.stg_ads__spend
    where spend_date > $as_of::date - $days::integer and spend_date <= $as_of
        and landed_date <= $as_of
    group by all
),
source_map(utm_source, channel) as (values {", ".join(f"('{s}', '{c}')" for s, c in UTM_SOURCE_CHANNEL)}),
purchases as (
    select e.event_date as date, m.channel, count(*) as outcome
    from staging.stg_web__events as e
    join source_map as m on m.utm_source = e.utm_source
    where e.event_type = 'purchase'
        and e.utm_medium in ({", ".join(f"'{m}'" for m in PAID_MEDIA)})
        and e.event_date > $as_of::date - $days::integer and e.event_date <= $as_of
        and e.landed_date <= $as_of
    group by all
)
select d.date, c.channel, coalesce(s.spend, 0)::double as spend, coalesce(p.outcome, 0) as outcome
from days as d
cross join channels as c
left join spend as s on s.date = d.date and s.channel = c.channel
left join purchases as p on p.date = d.date and p.channel = c.channel
order by c.channel, d.date
"""

# value of one outcome: mean net revenue of paid-touch orders over the same days
PAID_ORDER_VALUE_SQL = """
select avg(net_revenue_rc)::double as value_per_order, count(*) as orders
from intermediate.int_orders__economics
where is_paid_touch and order_date > $as_of::date - $days::integer and order_date <= $as_of
    and visible_from <= $as_of
"""

# exposures by cumulative frequency bucket per segment x creative over the last $days days.
# Expects a relation `measurement_segments(customer_id, segment)` registered by the caller
# (the partition's primary segments). freq = impressions of the creative seen by the customer
# up to and including that day (all history up to as_of); a conversion is an order within 7
# days after the exposure day.
FATIGUE_SQL = """
with exp as (
    select
        x.exposure_date, x.customer_id, x.creative_id, x.impressions, x.clicks,
        sum(x.impressions) over (
            partition by x.customer_id, x.creative_id order by x.exposure_date
            rows between unbounded preceding and current row
        ) as freq
    from staging.stg_ads__exposures as x
    where x.exposure_date <= $as_of and x.landed_date <= $as_of
),
recent as (
    select e.*, s.segment,
        case when freq <= 1 then 1 when freq <= 2 then 2 when freq <= 3 then 3
             when freq <= 5 then 4 when freq <= 10 then 6 when freq <= 20 then 11 else 21 end
            as freq_bucket
    from exp as e
    join measurement_segments as s using (customer_id)
    where e.exposure_date > $as_of::date - $days::integer
),
converted as (
    select distinct r.customer_id, r.creative_id, r.exposure_date
    from recent as r
    join intermediate.int_orders__economics as o
        on o.customer_id = r.customer_id
        and o.order_date > r.exposure_date and o.order_date <= r.exposure_date + 7
        and o.order_date <= $as_of and o.visible_from <= $as_of
)
select r.segment, r.creative_id, r.freq_bucket,
    sum(r.impressions) as impressions, sum(r.clicks) as clicks,
    count(c.customer_id) as conversions
from recent as r
left join converted as c using (customer_id, creative_id, exposure_date)
group by all
order by r.segment, r.creative_id, r.freq_bucket
"""


def curve_fits_from_frame(frame: pd.DataFrame) -> list[CurveFit]:
    """CurveFits back from the rows of ``CurveFit.as_dict()`` (e.g. the measurement.marginal_roi
    table): the ``param_<name>`` columns become the curve's parameters again."""
    names = {f.name for f in CurveFit.__dataclass_fields__.values()} - {"params"}
    fits = []
    for r in frame.to_dict("records"):
        kind = r.get("kind") or "hill"
        params = {p: float(r[f"param_{p}"]) for p in CURVES.get(kind, (None, None, ()))[2]
                  if r.get(f"param_{p}") is not None and np.isfinite(r.get(f"param_{p}"))}
        kw = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
              for k, v in r.items() if k in names}
        kw["segment"] = kw.get("segment") or None
        fits.append(CurveFit(params=params if r.get("status") == "ok" else {}, **kw))
    return fits


def migration_counts(long: pd.DataFrame) -> pd.DataFrame:
    """The ``counts`` matrix of ``migration`` back from its ``long`` form (segment_from,
    segment_to, customers): rows the segments then "new", columns the segments then "gone"."""
    segs = sorted((set(long["segment_from"]) | set(long["segment_to"])) - {NEW, GONE})
    return (long.pivot_table(index="segment_from", columns="segment_to", values="customers",
                             aggfunc="sum", fill_value=0)
            .reindex(index=segs + [NEW], columns=segs + [GONE], fill_value=0).astype(int))


# Acquisition cost. Paid channels map to the utm_medium their orders carry; a customer's
# acquisition medium is the utm_medium of their first order. CAC of a medium = its paid spend
# over the last $days days / customers whose first order in those days came through it; the
# blended CAC = all paid spend / all new customers (paid or not) in those days. Per segment,
# the acquisition cost per customer is the mean over its customers of the CAC of their
# acquisition medium (0 for organic, direct, email and referral first orders): what the
# segment's customers cost to acquire at today's prices.
CHANNEL_MEDIUM = (("google", "cpc"), ("meta", "paid_social"), ("tiktok", "paid_social"),
                  ("display", "display"))

CAC_SQL = f"""
with channel_medium(channel, medium) as (
    values {", ".join(f"('{c}', '{m}')" for c, m in CHANNEL_MEDIUM)}
),
spend as (
    select m.medium, sum(s.spend) as spend
    from staging.stg_ads__spend as s
    join channel_medium as m using (channel)
    where s.spend_date > $as_of::date - $days::integer and s.spend_date <= $as_of
        and s.landed_date <= $as_of
    group by all
),
first_orders as (
    select customer_id, min(order_date) as first_order_date,
        arg_min(coalesce(utm_medium, 'unknown'), ordered_at) as medium
    from intermediate.int_orders__economics
    where order_date <= $as_of and visible_from <= $as_of
    group by customer_id
),
new_customers as (
    select medium, count(*) as new_customers
    from first_orders
    where first_order_date > $as_of::date - $days::integer
    group by medium
)
select
    coalesce(s.medium, n.medium) as medium,
    coalesce(s.spend, 0)::double as spend,
    coalesce(n.new_customers, 0) as new_customers,
    case when s.medium is not null and n.new_customers > 0
        then s.spend / n.new_customers end as cac,
    sum(coalesce(s.spend, 0)) over () / nullif(sum(coalesce(n.new_customers, 0)) over (), 0)
        as blended_cac
from spend as s
full join new_customers as n using (medium)
order by medium
"""

# per customer of the partition's segments (registered relation `measurement_segments`):
# acquisition medium of the first order, and the trailing-year value from the features mart
SEGMENT_ECONOMICS_SQL = """
with first_orders as (
    select customer_id, arg_min(coalesce(utm_medium, 'unknown'), ordered_at) as medium
    from intermediate.int_orders__economics
    where order_date <= $as_of and visible_from <= $as_of
    group by customer_id
)
select
    s.segment,
    count(*) as customers,
    avg(coalesce(c.cac, 0))::double as cac,
    avg(coalesce(f.revenue_365d, 0))::double as ltv_proxy,
    avg(coalesce(f.contribution_margin_365d, 0))::double as margin
from measurement_segments as s
left join first_orders as o using (customer_id)
left join measurement_cac as c on c.medium = o.medium
left join marts.customer_features as f on f.customer_id = s.customer_id and f.as_of_date = $as_of
group by s.segment
order by s.segment
"""
