"""Layer 3: decision segments — a small operable set, each tied to a playbook entry.

Input: one row per customer at the partition date with ``customer_id``, ``lifecycle_state``,
``aov_tier``, ``category_family``, ``marketing_consent``, the feature columns of
``features.FEATURE_COLUMNS`` and calibrated scores ``<target>_score``. A score column may be
entirely NaN (model absent) and web/ads features all zero or NaN (a CRM-only brand).

Every cut is calibrated on the partition: a quantile of a score or value among the segment's
eligible population, never a probability written in code. The policy (quantiles, floors,
priority, minimum size) lives in ``config/segments.yaml``; the learned cut values are returned
in ``SegmentResult.thresholds``. A comparison with NaN is False: a customer outside a model's
population is in no segment that needs that model.

Ranking by a model: customers are ranked by the model's log-odds (``<target>_log_odds``) when
the frame has them, else by the calibrated score (``rank_key``). Isotonic calibration is a step
function: on the default data each score has a few hundred distinct values and its largest
step holds 12-35 % of the customers, so a quantile cut on the calibrated score takes or leaves
a whole step, and a segment's size jumped by up to half from one night to the next. The
log-odds order customers as the calibrated score does (the calibration is monotone) with its
ties broken by the model itself, so a cut at the q-quantile selects (1 - q) of the population
every night. A model cut is reported twice: ``<name>_log_odds_cut`` (the cut itself, when
ranked by log-odds) and ``<name>_cut``-style keys holding the lowest calibrated probability
selected, the figure a marketer reads.

Rules (``q`` values from segments.yaml; "score >= its q-quantile" means the model's ranking key,
``rank_key``, >= its q-quantile; for other values, ties at the cut are included):

- ready_to_repeat: lifecycle new/active/lapsing. Repeat buyers (orders_lifetime >= 2) with
  purchase_30d_score >= its q-quantile among eligible repeat buyers; one-order customers with
  repeat_90d_score >= its q-quantile among eligible one-order customers (purchase_30d_score
  when the repeat model is absent). Impossible without purchase_30d_score.
- likely_to_churn: lifecycle active/lapsing with revenue_365d > 0 (the "eligible"), and
  revenue_365d > value cut (median of all buyers' revenue_365d), and churn_90d_score >= its
  q-quantile among eligible, and expected loss (churn_90d_score x revenue_365d) >= its
  q-quantile among eligible. Impossible without churn_90d_score.
- deal_triggered: buyers (orders_lifetime > 0) with discount_next_order_score >= its
  q-quantile among buyers and discount_order_share >= max(its q-quantile among buyers,
  min_discount_share) and > 0. Impossible without discount_next_order_score.
- high_intent_low_trust: web intent (weighted sum of 30-day product views, add-to-carts,
  checkout starts, abandoned checkouts) >= its q-quantile among customers with intent > 0,
  trust_view_share_90d >= its q-quantile among customers with trust share > 0 (and > 0),
  and orders_30d <= max_orders_30d (missing = 0). Impossible without web data.
- high_ltv_lookalike_seed: orders_365d >= min_orders_365d and contribution_margin_365d > 0
  (dropped, with a note, when margin is all missing), revenue_365d >= its q-quantile among
  those customers.
- maintain: the default.

Primary segment: the first segment of ``priority`` whose flag is set, else the default.
Minimum size: while some segment's primary count is below the minimum, the smallest such
segment is merged (its flags cleared, its customers fall to their next segment by priority,
else the default) and the reason recorded in ``merged``; one at a time because a merge can
only grow the others. ``in_<segment>`` flags are then consistent with the primary: the
primary's flag is always set, and a merged or impossible segment's flag is never set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SEGMENTS_CONFIG_PATH = CONFIG_DIR / "segments.yaml"
PLAYBOOK_PATH = CONFIG_DIR / "playbook.yaml"

SEGMENTS: tuple[str, ...] = (
    "ready_to_repeat",
    "likely_to_churn",
    "deal_triggered",
    "high_intent_low_trust",
    "high_ltv_lookalike_seed",
)
DEFAULT_SEGMENT = "maintain"
PLAYBOOK_FIELDS: tuple[str, ...] = (
    "angle",
    "proof_type",
    "offer",
    "format",
    "channel_role",
    "bid_direction",
    "budget_stance",
    "success_metric",
    "speed",
)
SPEEDS = ("performance", "strategic")


# --------------------------------------------------------------------------- shared helpers


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The threshold policy (segments, drivers, exclusions); the packaged file by default."""
    with open(path or SEGMENTS_CONFIG_PATH, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    for key in ("version", "priority", "segments", "drivers", "exclusions"):
        if key not in config:
            raise ValueError(f"segments config: missing key {key!r}")
    return config


def numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as float (NaN for missing values); all NaN when the column is absent."""
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def counts(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A count column where missing means "none recorded" (0)."""
    return np.nan_to_num(numeric(frame, name), nan=0.0)


def has_data(values: np.ndarray) -> bool:
    """True when the column carries information: some finite, non-zero value."""
    return bool(np.any(np.isfinite(values) & (values != 0)))


def quantile_cut(values: np.ndarray, population: np.ndarray, q: float) -> float:
    """The q-quantile of the finite values in ``population``; NaN when there are none."""
    v = values[population & np.isfinite(values)]
    return float(np.quantile(v, q)) if v.size else float("nan")


class ModelScore(NamedTuple):
    """A model's calibrated score per customer and the key customers are ranked by."""

    score: np.ndarray
    key: np.ndarray
    by_log_odds: bool  # the key is the model's log-odds (else the calibrated score itself)


def rank_key(frame: pd.DataFrame, target: str) -> ModelScore:
    """``target``'s model score. The key is ``<target>_log_odds`` when that column is present
    and finite exactly where the calibrated score is; otherwise the calibrated score itself
    (module docstring)."""
    score = numeric(frame, f"{target}_score")
    log_odds = numeric(frame, f"{target}_log_odds")
    finite = np.isfinite(score)
    if finite.any() and np.array_equal(np.isfinite(log_odds), finite):
        return ModelScore(score, log_odds, True)
    return ModelScore(score, score, False)


def model_cut(
    m: ModelScore, population: np.ndarray, q: float, name: str
) -> tuple[np.ndarray, dict[str, float]]:
    """Customers of ``population`` whose ranking key is >= its q-quantile there, and the
    thresholds to report: ``name`` = the lowest calibrated score selected (NaN when none),
    ``<name minus _cut>_log_odds_cut`` = the key's cut when ranked by log-odds."""
    cut = quantile_cut(m.key, population, q)
    selected = population & (m.key >= cut)
    chosen = m.score[selected & np.isfinite(m.score)]
    reported = {name: float(chosen.min()) if chosen.size else float("nan")}
    if m.by_log_odds:
        reported[name.replace("_cut", "_log_odds_cut", 1)] = cut
    return selected, reported


def top_share(values: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Per customer: share of the population with a value >= theirs (1 % = the very top)."""
    out = np.full(values.shape, np.nan)
    mask = population & np.isfinite(values)
    if mask.any():
        out[mask] = pd.Series(values[mask]).rank(ascending=False, method="max", pct=True)
    return out


def compose(mask: np.ndarray, *parts: str | tuple[np.ndarray, str | None]) -> np.ndarray:
    """Reason texts for the rows in ``mask`` only (formatting is the costly part).

    A part is literal text, or ``(values, spec)``: a per-customer array formatted with the
    printf ``spec`` (``None``: already text). Vectorised over the selected rows.
    """
    out = pd.Series("", index=range(int(mask.sum())), dtype=object)
    for part in parts:
        if isinstance(part, str):
            out = out + part
            continue
        values, spec = part
        chosen = np.asarray(values)[mask]
        if spec is None:
            out = out + pd.Series(chosen.astype(str), dtype=object)
        else:
            out = out + pd.Series(np.char.mod(spec, chosen.astype(float)), dtype=object)
    return out.to_numpy(dtype=object)


def top_pct(share: np.ndarray) -> tuple[np.ndarray, str]:
    """A ``compose`` part: 'top 7%' from a share in (0, 1] (text follows the 'top ')."""
    return np.ceil(np.nan_to_num(share, nan=1.0) * 100), "top %d%%"


# ------------------------------------------------------------------------------- the result


@dataclass
class SegmentResult:
    table: pd.DataFrame  # customer_id, primary_segment, in_<segment>..., segment_reason
    thresholds: dict[str, dict[str, float]]
    sizes: dict[str, int]  # primary counts, every segment listed (0 for merged/impossible)
    merged: dict[str, str] = field(default_factory=dict)  # segment -> reason
    impossible: dict[str, str] = field(default_factory=dict)  # segment -> reason
    notes: dict[str, str] = field(default_factory=dict)  # segment -> rule adjustment stated
    membership_sizes: dict[str, int] = field(default_factory=dict)  # in_ flag counts
    config_version: str = ""
    minimum: int = 0  # the minimum primary count in force (min_segment_size)
    merged_sizes: dict[str, int] = field(default_factory=dict)  # primary count when merged

    def status_table(self) -> pd.DataFrame:
        """One row per decision segment: stands, merged (too small, by the minimum-size rule)
        or impossible (its data is missing), with its size and the reason."""
        rows = []
        for s in SEGMENTS:
            if s in self.impossible:
                rows.append((s, "impossible", 0, self.impossible[s]))
            elif s in self.merged:
                rows.append((s, "merged", self.merged_sizes.get(s, 0), self.merged[s]))
            else:
                rows.append((s, "stands", self.sizes.get(s, 0), ""))
        out = pd.DataFrame(rows, columns=["segment", "status", "primary_customers", "reason"])
        out["minimum"] = self.minimum
        return out

    def metadata(self) -> dict[str, Any]:
        """JSON-ready figures for the asset metadata (NaN cuts written as null)."""
        return {
            "config_version": self.config_version,
            "sizes": self.sizes,
            "membership_sizes": self.membership_sizes,
            "thresholds": {
                s: {k: (v if np.isfinite(v) else None) for k, v in d.items()}
                for s, d in self.thresholds.items()
            },
            "merged": self.merged,
            "impossible": self.impossible,
            "notes": self.notes,
        }


@dataclass
class _Rule:
    member: np.ndarray
    reason: Callable[[np.ndarray], np.ndarray]  # mask -> reason texts of those rows
    thresholds: dict[str, float]
    note: str = ""


class _Impossible(Exception):
    """A segment the data cannot support; the message is the reason."""


# ------------------------------------------------------------------------------ the rules


def _states(frame: pd.DataFrame, states: list[str]) -> np.ndarray:
    if "lifecycle_state" not in frame.columns:
        raise ValueError("assign_segments: missing column 'lifecycle_state'")
    return frame["lifecycle_state"].isin(states).to_numpy()


def _need_score(frame: pd.DataFrame, target: str) -> ModelScore:
    """``rank_key`` of a model the rule cannot do without."""
    m = rank_key(frame, target)
    if not np.isfinite(m.score).any():
        raise _Impossible(f"{target} model absent: {target}_score is missing for every customer")
    return m


def _ready_to_repeat(frame: pd.DataFrame, cfg: dict, ctx: dict) -> _Rule:
    p30 = _need_score(frame, "purchase_30d")
    rep = rank_key(frame, "repeat_90d")
    q = cfg["score_quantile"]
    orders = numeric(frame, "orders_lifetime")
    eligible = _states(frame, cfg["states"])
    multi = eligible & (orders >= 2)
    single = eligible & (orders == 1)
    note = ""
    if np.isfinite(rep.score[single]).any():
        single_model, single_name = rep, "repeat chance 90d"
    else:
        single_model, single_name = p30, "purchase chance 30d"
        note = "repeat_90d model absent: one-order customers ranked by purchase_30d_score"
    top_multi, cuts = model_cut(p30, multi, q, "purchase_30d_cut_repeat_buyers")
    top_single, cuts_single = model_cut(single_model, single, q, "score_cut_one_order")
    member = top_multi | top_single
    score = np.where(single, single_model.score, p30.score)
    share = np.where(single, top_share(single_model.key, single), top_share(p30.key, multi))
    name = np.where(single, single_name, "purchase chance 30d")
    group = np.where(single, "one-order", "repeat")

    def reason(m):
        return compose(
            m,
            (name, None),
            " ",
            (score, "%.2f"),
            " (",
            top_pct(share),
            " of ",
            (group, None),
            " customers)",
        )

    return _Rule(member, reason, {**cuts, **cuts_single}, note)


def _likely_to_churn(frame: pd.DataFrame, cfg: dict, ctx: dict) -> _Rule:
    churn_model = _need_score(frame, "churn_90d")
    churn = churn_model.score
    revenue = numeric(frame, "revenue_365d")
    buyers = revenue > 0
    eligible = _states(frame, cfg["states"]) & buyers
    value_cut = quantile_cut(revenue, buyers, cfg["value_quantile"])
    at_risk, churn_cuts = model_cut(churn_model, eligible, cfg["churn_quantile"], "churn_90d_cut")
    loss = churn * revenue
    loss_cut = quantile_cut(loss, eligible, cfg["expected_loss_quantile"])
    member = eligible & (revenue > value_cut) & at_risk & (loss >= loss_cut)
    cur = ctx["currency"]

    def reason(m):
        return compose(
            m,
            "churn risk ",
            (churn, "%.2f"),
            " (",
            top_pct(top_share(churn_model.key, eligible)),
            "), ",
            (revenue, "%.0f"),
            f" {cur} last year, expected loss ",
            (loss, "%.0f"),
            f" {cur}",
        )

    return _Rule(
        member,
        reason,
        {"revenue_365d_cut": value_cut, **churn_cuts, "expected_loss_cut": loss_cut},
    )


def _deal_triggered(frame: pd.DataFrame, cfg: dict, ctx: dict) -> _Rule:
    model = _need_score(frame, "discount_next_order")
    share = numeric(frame, "discount_order_share")
    buyers = numeric(frame, "orders_lifetime") > 0
    top, score_cuts = model_cut(model, buyers, cfg["score_quantile"], "discount_next_order_cut")
    share_cut = max(quantile_cut(share, buyers, cfg["share_quantile"]), cfg["min_discount_share"])
    member = top & (share >= share_cut) & (share > 0)

    def reason(m):
        return compose(
            m,
            "discount-order chance ",
            (model.score, "%.2f"),
            " (",
            top_pct(top_share(model.key, buyers)),
            "), ",
            (np.nan_to_num(share) * 100, "%.0f"),
            "% of past orders discounted",
        )

    return _Rule(
        member,
        reason,
        {**score_cuts, "discount_order_share_cut": share_cut},
    )


def _high_intent_low_trust(frame: pd.DataFrame, cfg: dict, ctx: dict) -> _Rule:
    if not ctx["sources_present"].get("web", False):
        raise _Impossible("no web source: web intent and trust-content views are unknown")
    intent = np.zeros(len(frame))
    for col, weight in cfg["intent_weights"].items():
        intent += weight * counts(frame, col)
    trust = numeric(frame, "trust_view_share_90d")
    if not has_data(intent):
        raise _Impossible("web source present but no customer has any 30-day web intent")
    if not has_data(trust):
        raise _Impossible("web source present but no customer has viewed trust content")
    with_intent = intent > 0
    with_trust = trust > 0
    intent_cut = quantile_cut(intent, with_intent, cfg["intent_quantile"])
    trust_cut = quantile_cut(trust, with_trust, cfg["trust_quantile"])
    recent_orders = counts(frame, "orders_30d")
    member = (
        with_intent
        & (intent >= intent_cut)
        & with_trust
        & (trust >= trust_cut)
        & (recent_orders <= cfg["max_orders_30d"])
    )

    def reason(m):
        return compose(
            m,
            "web intent ",
            (intent, "%.0f"),
            " (",
            top_pct(top_share(intent, with_intent)),
            "), ",
            (np.nan_to_num(trust) * 100, "%.0f"),
            "% of page views on trust content, no recent order",
        )

    return _Rule(member, reason, {"web_intent_cut": intent_cut, "trust_view_share_cut": trust_cut})


def _high_ltv_lookalike_seed(frame: pd.DataFrame, cfg: dict, ctx: dict) -> _Rule:
    revenue = numeric(frame, "revenue_365d")
    margin = numeric(frame, "contribution_margin_365d")
    eligible = numeric(frame, "orders_365d") >= cfg["min_orders_365d"]
    note = ""
    if np.isfinite(margin).any():
        eligible &= margin > 0
    else:
        note = "contribution margin unavailable: positive-margin condition dropped"
    if not (eligible & (revenue > 0)).any():
        raise _Impossible(
            f"no customer with >= {cfg['min_orders_365d']} orders in the last year"
            + ("" if note else " and a positive contribution margin")
        )
    cut = quantile_cut(revenue, eligible, cfg["value_quantile"])
    member = eligible & (revenue >= cut) & (revenue > 0)
    cur = ctx["currency"]

    def reason(m):
        return compose(
            m,
            (revenue, "%.0f"),
            f" {cur} last year (",
            top_pct(top_share(revenue, eligible)),
            " of repeat customers), margin ",
            (margin, "%.0f"),
            f" {cur}",
        )

    return _Rule(member, reason, {"revenue_365d_cut": cut}, note)


RULES = {
    "ready_to_repeat": _ready_to_repeat,
    "likely_to_churn": _likely_to_churn,
    "deal_triggered": _deal_triggered,
    "high_intent_low_trust": _high_intent_low_trust,
    "high_ltv_lookalike_seed": _high_ltv_lookalike_seed,
}


# ------------------------------------------------------------------------------ assignment


def _primary(flags: dict[str, np.ndarray], priority: list[str], n: int, default: str):
    active = [s for s in priority if s in flags]
    if not active:
        return np.full(n, default, dtype=object)
    return np.select([flags[s] for s in active], active, default=default).astype(object)


def min_segment_size(config: dict[str, Any], n_customers: int) -> int:
    """The minimum primary count of a segment for a base of ``n_customers``:
    ``min_segment_size`` for a large base, ``min_segment_base_share`` of a smaller one (never
    below ``min_segment_floor``, nor above ``min_segment_size``), and at least ``min_segment_share`` of any base. Without
    ``min_segment_base_share`` (a run config's explicit size) the size is taken as it is."""
    share = float(config.get("min_segment_share") or 0.0)
    size = int(config["min_segment_size"])
    base_share = config.get("min_segment_base_share")
    if base_share:
        floor = min(int(config.get("min_segment_floor", 0)), size)
        size = max(floor, min(size, math.ceil(float(base_share) * n_customers)))
    return max(size, math.ceil(share * n_customers))


def assign_segments(
    frame: pd.DataFrame,
    config: dict[str, Any] | None = None,
    sources_present: dict[str, bool] | None = None,
) -> SegmentResult:
    """One primary decision segment per customer, membership flags and a reason per row."""
    config = config or load_config()
    sources_present = sources_present or {}
    priority = list(config["priority"])
    if sorted(priority) != sorted(SEGMENTS):
        raise ValueError(f"segments config: priority must list exactly {SEGMENTS}, got {priority}")
    if frame["customer_id"].duplicated().any():
        raise ValueError("assign_segments: duplicate customer_id")
    default = config.get("default_segment", DEFAULT_SEGMENT)
    frame = frame.reset_index(drop=True)
    n = len(frame)
    ctx = {"sources_present": sources_present, "currency": config.get("currency", "EUR")}

    rules: dict[str, _Rule] = {}
    impossible: dict[str, str] = {}
    for seg in priority:
        try:
            rules[seg] = RULES[seg](frame, config["segments"][seg], ctx)
        except _Impossible as exc:
            impossible[seg] = str(exc)

    flags = {s: r.member.copy() for s, r in rules.items()}
    minimum = min_segment_size(config, n)
    merged: dict[str, str] = {}
    merged_sizes: dict[str, int] = {}
    while True:
        primary = _primary(flags, priority, n, default)
        sizes = pd.Series(primary).value_counts()
        small = {s: int(sizes.get(s, 0)) for s in flags if sizes.get(s, 0) < minimum}
        if not small:
            break
        seg = min(small, key=lambda s: (small[s], priority.index(s)))
        merged_sizes[seg] = small[seg]
        merged[seg] = (
            f"{small[seg]} customers with it as primary segment < minimum {minimum} "
            f"(sized for learning): merged into {default}; members fall to their next "
            f"segment by priority"
        )
        del flags[seg]

    reason = pd.Series("default: no decision segment applies", index=range(n), dtype=object)
    was_merged = np.zeros(n, dtype=bool)
    for seg in merged:
        was_merged |= rules[seg].member
    reason[was_merged & (primary == default)] = (
        "default: decision segment too small to test, merged into " + default
    )
    for seg, r in rules.items():
        if seg in flags:
            at = primary == seg
            reason[at] = r.reason(at)

    table = pd.DataFrame({"customer_id": frame["customer_id"], "primary_segment": primary})
    for seg in SEGMENTS:
        table[f"in_{seg}"] = flags.get(seg, np.zeros(n, dtype=bool))
    table["segment_reason"] = reason.to_numpy()

    counts_ = table["primary_segment"].value_counts()
    return SegmentResult(
        table=table,
        thresholds={s: r.thresholds for s, r in rules.items()},
        sizes={s: int(counts_.get(s, 0)) for s in (*SEGMENTS, default)},
        merged=merged,
        minimum=minimum,
        merged_sizes=merged_sizes,
        impossible=impossible,
        notes={s: r.note for s, r in rules.items() if r.note},
        membership_sizes={s: int(table[f"in_{s}"].sum()) for s in SEGMENTS},
        config_version=str(config["version"]),
    )


# ------------------------------------------------------------------------------- playbook


def load_playbook(path: str | Path | None = None) -> dict[str, Any]:
    """The versioned playbook; every entry must fill every field of ``PLAYBOOK_FIELDS``."""
    with open(path or PLAYBOOK_PATH, encoding="utf-8") as fh:
        playbook = yaml.safe_load(fh)
    if not str(playbook.get("version") or "").strip():
        raise ValueError("playbook: missing version")
    entries = playbook.get("segments") or {}
    for seg, entry in entries.items():
        empty = [f for f in PLAYBOOK_FIELDS if not str((entry or {}).get(f) or "").strip()]
        if empty:
            raise ValueError(f"playbook: segment {seg!r} has empty fields {empty}")
        if entry["speed"] not in SPEEDS:
            raise ValueError(f"playbook: segment {seg!r} speed must be one of {SPEEDS}")
    return playbook


def attach_playbook(table: pd.DataFrame, playbook: dict[str, Any]) -> pd.DataFrame:
    """The segment table with what to do on every row (``playbook_*`` columns + version)."""
    entries = playbook["segments"]
    missing = sorted(set(table["primary_segment"].unique()) - set(entries))
    if missing:
        raise ValueError(f"playbook: no entry for segments {missing}")
    plays = pd.DataFrame.from_dict(entries, orient="index")[list(PLAYBOOK_FIELDS)]
    plays = plays.add_prefix("playbook_")
    out = table.join(plays, on="primary_segment")
    out["playbook_version"] = str(playbook["version"])
    return out
