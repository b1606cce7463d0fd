"""Do-not-target exclusion audiences, each with its evidence, and the activation filter.

Rules (policy in ``config/segments.yaml`` → ``exclusions``; quantile cuts are learned on the
partition and returned in ``ExclusionResult.thresholds``; a comparison with NaN is False;
a model score ">= its quantile" ranks customers by the model's log-odds when present, as the
segments do: ``segments.rank_key``):

- organic_inevitable — an established customer who would buy anyway without paid media:
  customer_age_days >= min_tenure_days AND orders_365d >= min_orders_365d AND order rate >=
  its frequency_quantile among established buyers (customer_age_days >= min_tenure_days,
  orders_lifetime > 0) AND unpaid_order_share >= min_unpaid_share AND (purchase_30d_score
  >= its purchase_quantile among buyers (orders_lifetime > 0) OR overdue_ratio <=
  max_overdue_ratio: on schedule, as right after an order a frequent buyer's 30-day chance
  is low). The order rate is orders_365d x 365 / the days seen, min(customer_age_days + 1,
  ``order_history_days``: 1 + the largest days_since_first_order of the partition, at most
  365), so a customer seen for fewer days is judged at the same pace, not excluded for a
  short history. Ad clicks are not a condition: an order without a paid touch is the
  response to paid media that counts.
  Holdout evidence (``HoldoutEvidence``) is about the audience as a whole, not one customer:
  the incrementality of paid activation for customers who had this history when they were
  activated, treated vs held out (``measurement.organic_inevitable_evidence``). When it is
  measured (status "ok") and the lower bound of its 95% relative-lift interval is above
  max_holdout_lift — paid media demonstrably moves customers like these — the audience is
  withheld (size 0, the reason in ``withheld`` and ``notes``): excluding them would lose
  sales. Otherwise the audience stands and the evidence (lift, interval, n, or why there is
  no estimate) is in ``notes`` and in every member's reason; without evidence (no
  activation log yet) a note says the rule stands on propensity and history alone.
  Impossible without purchase_30d_score, unpaid_order_share or customer_age_days.
  Evidence: purchase_30d_score, unpaid_order_share, orders_365d, paid_orders_365d; the
  reason also gives overdue_ratio, the days seen, the order rate and the tenure.
- margin_destroyer — unprofitable after returns, refunds, discounts, shipping and support:
  orders_365d >= min_orders_365d AND contribution_margin_365d < max_margin (and <= its
  margin_quantile among those customers when set) AND high return propensity:
  return_60d_score >= its return_quantile among buyers OR return_rate_365d >= its
  return_quantile among buyers (and > 0). With no return evidence at all (no return
  model and no return data) the return condition is dropped, stated in ``notes``.
  Impossible without contribution_margin_365d.
  Evidence: orders_365d, contribution_margin_365d, margin_per_order_365d, return_rate_365d,
  refund_share_365d, discount_rate, support_minutes_365d, return_60d_score.
- creative_resistant — many impressions, no movement: impressions_30d >=
  max(impressions_quantile among exposed customers (impressions_30d > 0), min_impressions)
  AND clicks_30d == 0 AND sessions_30d == 0 AND orders_30d == 0 (missing counts are "none
  recorded"). Impossible when nobody had an impression.
  Evidence: impressions_30d, exposure_days_30d, clicks_30d, sessions_30d, orders_30d.

Consent is a hard filter applied after everything, in ``activation_audiences``: a customer
without marketing consent (or with unknown consent) is in no activation audience, and a
customer in any exclusion audience is removed from every activation segment. The segment
table itself still describes them (internal analysis), the activation frame does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.lib.segments import (
    SEGMENTS,
    compose,
    counts,
    has_data,
    load_config,
    model_cut,
    numeric,
    quantile_cut,
    rank_key,
)

AUDIENCES: tuple[str, ...] = ("organic_inevitable", "margin_destroyer", "creative_resistant")
EVIDENCE: dict[str, tuple[str, ...]] = {
    "organic_inevitable": (
        "purchase_30d_score",
        "unpaid_order_share",
        "orders_365d",
        "paid_orders_365d",
    ),
    "margin_destroyer": (
        "orders_365d",
        "contribution_margin_365d",
        "margin_per_order_365d",
        "return_rate_365d",
        "refund_share_365d",
        "discount_rate",
        "support_minutes_365d",
        "return_60d_score",
    ),
    "creative_resistant": (
        "impressions_30d",
        "exposure_days_30d",
        "clicks_30d",
        "sessions_30d",
        "orders_30d",
    ),
}
EVIDENCE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(c for cs in EVIDENCE.values() for c in cs))


def _finite(v) -> float | None:
    return None if v is None or not np.isfinite(float(v)) else float(v)


@dataclass(frozen=True)
class HoldoutEvidence:
    """Holdout evidence for the organic_inevitable audience as a whole: the relative lift of
    paid activation on the conversion of customers who had the organic-inevitable history
    when they were activated (treated vs held out), its 95% interval and n per group; status
    is "ok" or why there is no estimate (e.g. "not enough data yet: ...")."""

    status: str
    relative_lift: float | None = None
    lo: float | None = None
    hi: float | None = None
    n_treated: int = 0
    n_holdout: int = 0

    @classmethod
    def of(cls, value: HoldoutEvidence | Mapping[str, Any] | None) -> HoldoutEvidence | None:
        """From a mapping with these keys (others are ignored), e.g. the dict of
        ``measurement.organic_inevitable_evidence``."""
        if value is None or isinstance(value, cls):
            return value
        kw = {f.name: value[f.name] for f in fields(cls) if f.name in value}
        for k in ("relative_lift", "lo", "hi"):
            kw[k] = _finite(kw.get(k))
        return cls(**kw)

    @property
    def measured(self) -> bool:
        return self.status == "ok" and None not in (self.relative_lift, self.lo, self.hi)

    def text(self) -> str:
        n = f"n {self.n_treated} treated, {self.n_holdout} held out"
        if self.measured:
            return (f"paid-media lift on organic-profile customers {self.relative_lift:+.0%} "
                    f"(95% CI {self.lo:+.0%} to {self.hi:+.0%}; {n})")
        if self.status == "ok":  # a group without conversions: no relative lift
            return f"paid-media lift on organic-profile customers undefined ({n})"
        return f"holdout evidence: {self.status}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExclusionResult:
    # one row per (customer, audience): customer_id, audience, evidence columns, reason
    table: pd.DataFrame
    thresholds: dict[str, dict[str, float]]
    sizes: dict[str, int]
    impossible: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # audiences whose rule ran but whose members are withheld, with the reason
    withheld: dict[str, str] = field(default_factory=dict)
    holdout_evidence: HoldoutEvidence | None = None

    def metadata(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes,
            "thresholds": {
                a: {k: (v if np.isfinite(v) else None) for k, v in d.items()}
                for a, d in self.thresholds.items()
            },
            "impossible": self.impossible,
            "notes": self.notes,
            "withheld": self.withheld,
            "organic_inevitable_holdout_evidence": (
                self.holdout_evidence.as_dict() if self.holdout_evidence else None),
        }


class _Impossible(Exception):
    pass


class _Withheld(Exception):
    def __init__(self, reason: str, thresholds: dict[str, float]):
        super().__init__(reason)
        self.thresholds = thresholds


YEAR_DAYS = 365.0  # the window of orders_365d


def order_history_days(frame: pd.DataFrame) -> float:
    """How many days of order history the partition holds, at most a year: one more than the
    oldest order's days_since_first_order (a warehouse whose order export began recently
    shows fewer than 365 days); 365 when it cannot be told."""
    oldest = numeric(frame, "days_since_first_order")
    if not np.isfinite(oldest).any():
        return YEAR_DAYS
    return float(min(YEAR_DAYS, np.nanmax(oldest) + 1.0))


def _organic_inevitable(frame, cfg, holdout):
    p30_model = rank_key(frame, "purchase_30d")
    p30 = p30_model.score
    unpaid = numeric(frame, "unpaid_order_share")
    age = numeric(frame, "customer_age_days")
    if not np.isfinite(p30).any():
        raise _Impossible("purchase_30d model absent: no propensity to judge 'would buy anyway'")
    if not np.isfinite(unpaid).any():
        raise _Impossible("unpaid_order_share missing for every customer: no order attribution")
    if not np.isfinite(age).any():
        raise _Impossible("customer_age_days missing for every customer: no tenure to judge "
                          "an established buying habit")
    orders = numeric(frame, "orders_365d")
    buyers = numeric(frame, "orders_lifetime") > 0
    # an established customer: past the first months, whose buying still follows the
    # acquisition offer and onboarding
    established = age >= float(cfg["min_tenure_days"])
    # frequency as a rate over the history we can see (tenure, the warehouse's order history,
    # at most the year): a customer observed for 200 days is not judged on a 365-day count
    history = order_history_days(frame)
    observed = np.minimum(age + 1.0, history)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(observed > 0, orders * YEAR_DAYS / observed, np.nan)
    rate_cut = quantile_cut(rate, buyers & established, cfg["frequency_quantile"])
    likely, p30_cuts = model_cut(p30_model, buyers, cfg["purchase_quantile"], "purchase_30d_cut")
    cut = p30_cuts["purchase_30d_cut"]
    # likely to buy again: the purchase model says so, or they are on schedule (right after
    # an order a monthly buyer's 30-day chance is low: timing, not a lapse)
    overdue = numeric(frame, "overdue_ratio")
    max_overdue = float(cfg["max_overdue_ratio"])
    member = (
        established
        & (orders >= cfg["min_orders_365d"])  # a habit, not one or two lucky organic orders
        & (rate >= rate_cut)
        & (unpaid >= cfg["min_unpaid_share"])
        & (likely | (overdue <= max_overdue))
    )
    parts: list = [
        "purchase chance 30d ",
        (p30, "%.2f"),
        f" (cut {cut:.2f}), days since the last order ",
        (overdue, "%.1f"),
        f"x their usual interval (on schedule <= {max_overdue:g}), ",
        (orders, "%.0f"),
        " orders in the ",
        (observed, "%.0f"),
        " days seen (",
        (rate, "%.1f"),
        f" a year, >= cut {rate_cut:.1f}), ",
        (np.nan_to_num(unpaid) * 100, "%.0f"),
        "% of all their orders without a paid touch, customer for ",
        (age, "%.0f"),
        " days",
    ]
    thresholds = {**p30_cuts, "order_rate_cut": rate_cut,
                  "order_history_days": history}
    limit = float(cfg["max_holdout_lift"])
    if holdout is None:
        note = ("no holdout evidence yet (no activation log): the rule stands on propensity "
                "and history alone")
    elif holdout.measured and holdout.lo > limit:
        raise _Withheld(
            f"withheld: paid media demonstrably moves customers with this history: "
            f"{holdout.text()}, lower bound above max_holdout_lift {limit:+.0%}; excluding "
            f"them from paid media would lose sales", thresholds)
    else:
        parts.append(f"; {holdout.text()}")
        if holdout.measured:
            note = (f"holdout evidence does not show paid media moving customers with this "
                    f"history (lower bound {holdout.lo:+.0%} <= max_holdout_lift "
                    f"{limit:+.0%}): the audience stands; {holdout.text()}")
        else:
            note = (f"no holdout estimate ({holdout.text()}): the rule stands on propensity "
                    f"and history alone")
    return member, compose(member, *parts), thresholds, note


def _margin_destroyer(frame, cfg, holdout):
    margin = numeric(frame, "contribution_margin_365d")
    if not np.isfinite(margin).any():
        raise _Impossible("contribution_margin_365d missing for every customer")
    orders = numeric(frame, "orders_365d")
    buyers = numeric(frame, "orders_lifetime") > 0
    sure = orders >= cfg["min_orders_365d"]
    margin_cut = float(cfg["max_margin"])
    if cfg.get("materiality") == "median_repeat_buyer_margin":
        # loses more over the year than a typical repeat buyer earns: a loss that matters,
        # not a rounding error on one order
        typical = np.nanmedian(margin[sure]) if sure.any() else np.nan
        if np.isfinite(typical) and typical > 0:
            margin_cut = min(margin_cut, -float(typical))
    member = sure & (margin < margin_cut)
    thresholds = {"margin_below": margin_cut}
    if cfg.get("margin_quantile") is not None:
        q_cut = quantile_cut(margin, sure, cfg["margin_quantile"])
        thresholds["margin_quantile_cut"] = q_cut
        member &= margin <= q_cut

    ret_model = rank_key(frame, "return_60d")
    ret_score = ret_model.score
    ret_rate = numeric(frame, "return_rate_365d")
    note = ""
    high_return = np.zeros(len(frame), dtype=bool)
    evidence = False
    if np.isfinite(ret_score).any():
        top, cuts = model_cut(ret_model, buyers, cfg["return_quantile"], "return_60d_cut")
        thresholds.update(cuts)
        high_return |= top
        evidence = True
    if has_data(ret_rate):
        rate_cut = quantile_cut(ret_rate, buyers, cfg["return_quantile"])
        thresholds["return_rate_365d_cut"] = rate_cut
        high_return |= (ret_rate >= rate_cut) & (ret_rate > 0)
        evidence = True
    if evidence:
        member &= high_return
    else:
        note = "no return evidence (no return model, no return data): rule is negative margin only"
    reason = compose(
        member,
        "contribution margin ",
        (margin, "%.0f"),
        " over ",
        (orders, "%.0f"),
        " orders last year, ",
        (np.nan_to_num(ret_rate) * 100, "%.0f"),
        "% of units returned, return chance ",
        (ret_score, "%.2f"),
        ", discount ",
        (np.nan_to_num(numeric(frame, "discount_rate")) * 100, "%.0f"),
        "%, support ",
        (counts(frame, "support_minutes_365d"), "%.0f"),
        " min",
    )
    return member, reason, thresholds, note


def _creative_resistant(frame, cfg, holdout):
    impressions = counts(frame, "impressions_30d")
    exposed = impressions > 0
    if not exposed.any():
        raise _Impossible("no customer had an ad impression in the last 30 days (no ads data)")
    cut = max(
        quantile_cut(impressions, exposed, cfg["impressions_quantile"]),
        float(cfg["min_impressions"]),
    )
    member = (
        (impressions >= cut)
        & (counts(frame, "clicks_30d") == 0)
        & (counts(frame, "sessions_30d") == 0)
        & (counts(frame, "orders_30d") == 0)
    )
    reason = compose(
        member,
        (impressions, "%.0f"),
        " impressions on ",
        (counts(frame, "exposure_days_30d"), "%.0f"),
        " of the last 30 days: no click, no visit, no order",
    )
    return member, reason, {"impressions_30d_cut": cut}, ""


RULES = {
    "organic_inevitable": _organic_inevitable,
    "margin_destroyer": _margin_destroyer,
    "creative_resistant": _creative_resistant,
}


def build_exclusions(
    frame: pd.DataFrame,
    config: dict[str, Any] | None = None,
    holdout_evidence: HoldoutEvidence | Mapping[str, Any] | None = None,
) -> ExclusionResult:
    """The do-not-target audiences (long table: one row per customer and audience).

    ``holdout_evidence``: the organic_inevitable audience's holdout evidence (a
    ``HoldoutEvidence`` or a mapping with its fields: status, relative_lift, lo, hi,
    n_treated, n_holdout), None when there is none; see the module docstring for the rule."""
    config = config or load_config()
    cfg_all = config.get("exclusions", config)
    frame = frame.reset_index(drop=True)
    if frame["customer_id"].duplicated().any():
        raise ValueError("build_exclusions: duplicate customer_id")
    holdout = HoldoutEvidence.of(holdout_evidence)

    parts: list[pd.DataFrame] = []
    thresholds: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    impossible: dict[str, str] = {}
    notes: dict[str, str] = {}
    withheld: dict[str, str] = {}
    for audience in AUDIENCES:
        try:
            member, reason, th, note = RULES[audience](frame, cfg_all[audience], holdout)
        except _Impossible as exc:
            impossible[audience] = str(exc)
            sizes[audience] = 0
            continue
        except _Withheld as exc:
            thresholds[audience] = exc.thresholds
            withheld[audience] = notes[audience] = str(exc)
            sizes[audience] = 0
            continue
        thresholds[audience] = th
        if note:
            notes[audience] = note
        sizes[audience] = int(member.sum())
        part = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy()[member]})
        part["audience"] = audience
        for col in EVIDENCE_COLUMNS:
            part[col] = numeric(frame, col)[member] if col in EVIDENCE[audience] else np.nan
        part["reason"] = reason  # composed for the members only
        parts.append(part)

    columns = ["customer_id", "audience", *EVIDENCE_COLUMNS, "reason"]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    table = table[columns]
    return ExclusionResult(table, thresholds, sizes, impossible, notes, withheld, holdout)


def _consent_series(consent: pd.Series | pd.DataFrame, ids: pd.Series) -> np.ndarray:
    if isinstance(consent, pd.DataFrame):
        consent = consent.set_index("customer_id")["marketing_consent"]
    if consent.index.has_duplicates:
        raise ValueError("activation_audiences: duplicate customer_id in consent")
    # Boolean dtype refuses strings like "false" instead of reading them as True.
    values = pd.array(consent.to_numpy(), dtype="boolean")
    aligned = pd.Series(values, index=consent.index).reindex(ids.to_numpy())
    return aligned.fillna(False).to_numpy(dtype=bool)  # unknown consent = no consent


def activation_audiences(
    segments_table: pd.DataFrame,
    exclusions: ExclusionResult | pd.DataFrame,
    consent: pd.Series | pd.DataFrame,
) -> pd.DataFrame:
    """Per customer: may we activate them, in which segment, and if not, why not.

    ``consent``: a boolean Series indexed by customer_id, or a frame with customer_id and
    marketing_consent; a customer missing from it has no consent. Columns:
    customer_id, primary_segment, marketing_consent, exclusion_audiences ("" when none),
    activation_eligible, activation_segment (None when not eligible), activate_<segment>
    (the in_<segment> flag AND eligible), not_activated_reason.
    """
    ex_table = exclusions.table if isinstance(exclusions, ExclusionResult) else exclusions
    ids = segments_table["customer_id"]
    consented = _consent_series(consent, ids)
    excluded_by = (
        ex_table.groupby("customer_id")["audience"].agg(lambda a: ",".join(sorted(set(a))))
        if len(ex_table)
        else pd.Series(dtype=object)
    )
    excluded_list = excluded_by.reindex(ids.to_numpy()).fillna("").to_numpy(dtype=object)
    excluded = excluded_list != ""
    eligible = consented & ~excluded

    out = pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "primary_segment": segments_table["primary_segment"].to_numpy(),
            "marketing_consent": consented,
            "exclusion_audiences": excluded_list,
            "activation_eligible": eligible,
        }
    )
    out["activation_segment"] = out["primary_segment"].where(eligible, None)
    for seg in SEGMENTS:
        flag = f"in_{seg}"
        member = segments_table[flag].to_numpy(dtype=bool) if flag in segments_table else False
        out[f"activate_{seg}"] = member & eligible
    out["not_activated_reason"] = np.select(
        [~consented, excluded],
        ["no marketing consent", "excluded: " + pd.Series(excluded_list, dtype=object)],
        default="",
    )
    return out
