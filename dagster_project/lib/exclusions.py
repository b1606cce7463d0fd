"""Do-not-target exclusion audiences, each with its evidence, and the activation filter.

Rules (policy in ``config/segments.yaml`` → ``exclusions``; quantile cuts are learned on the
partition and returned in ``ExclusionResult.thresholds``; a comparison with NaN is False):

- organic_inevitable — would buy anyway without paid media: orders_365d >= min_orders_365d
  AND unpaid_order_share >= min_unpaid_share AND purchase_30d_score >= its
  purchase_quantile among buyers (orders_lifetime > 0). With a holdout-evidence frame
  (``customer_id``, ``holdout_incremental_lift``: measured lift of paid media on the
  customer's conversion), members with lift > max_holdout_lift are kept out; without one the
  rule stands on propensity and history. Impossible without purchase_30d_score or
  unpaid_order_share.
  Evidence: purchase_30d_score, unpaid_order_share, orders_365d, paid_orders_365d.
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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.lib.segments import (
    SEGMENTS,
    compose,
    counts,
    has_data,
    load_config,
    numeric,
    quantile_cut,
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
HOLDOUT_COLUMN = "holdout_incremental_lift"


@dataclass
class ExclusionResult:
    # one row per (customer, audience): customer_id, audience, evidence columns, reason
    table: pd.DataFrame
    thresholds: dict[str, dict[str, float]]
    sizes: dict[str, int]
    impossible: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes,
            "thresholds": {
                a: {k: (v if np.isfinite(v) else None) for k, v in d.items()}
                for a, d in self.thresholds.items()
            },
            "impossible": self.impossible,
            "notes": self.notes,
        }


class _Impossible(Exception):
    pass


def _organic_inevitable(frame, cfg, holdout):
    p30 = numeric(frame, "purchase_30d_score")
    unpaid = numeric(frame, "unpaid_order_share")
    if not np.isfinite(p30).any():
        raise _Impossible("purchase_30d model absent: no propensity to judge 'would buy anyway'")
    if not np.isfinite(unpaid).any():
        raise _Impossible("unpaid_order_share missing for every customer: no order attribution")
    orders = numeric(frame, "orders_365d")
    buyers = numeric(frame, "orders_lifetime") > 0
    cut = quantile_cut(p30, buyers, cfg["purchase_quantile"])
    # "would buy anyway" needs a history: frequent buying, not one lucky organic order
    freq_cut = max(float(cfg["min_orders_365d"]),
                   quantile_cut(orders, buyers, cfg.get("frequency_quantile", 0.0)))
    member = (orders >= freq_cut) & (unpaid >= cfg["min_unpaid_share"]) & (p30 >= cut)
    parts: list = [
        "purchase chance 30d ",
        (p30, "%.2f"),
        f" (>= cut {cut:.2f}), ",
        (np.nan_to_num(unpaid) * 100, "%.0f"),
        "% of ",
        (orders, "%.0f"),
        " orders last year without a paid touch",
    ]
    note = ""
    if holdout is not None:
        lift = holdout.reindex(frame["customer_id"]).to_numpy(dtype=float, na_value=np.nan)
        member &= ~(lift > cfg["max_holdout_lift"])
        parts += [", holdout lift ", (lift, "%.2f")]
        note = f"holdout evidence used: lift > {cfg['max_holdout_lift']} keeps a customer out"
    return (member, compose(member, *parts),
            {"purchase_30d_cut": cut, "orders_365d_cut": freq_cut}, note)


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

    ret_score = numeric(frame, "return_60d_score")
    ret_rate = numeric(frame, "return_rate_365d")
    note = ""
    high_return = np.zeros(len(frame), dtype=bool)
    evidence = False
    if np.isfinite(ret_score).any():
        score_cut = quantile_cut(ret_score, buyers, cfg["return_quantile"])
        thresholds["return_60d_cut"] = score_cut
        high_return |= ret_score >= score_cut
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
    holdout_evidence: pd.DataFrame | None = None,
) -> ExclusionResult:
    """The do-not-target audiences (long table: one row per customer and audience)."""
    config = config or load_config()
    cfg_all = config.get("exclusions", config)
    frame = frame.reset_index(drop=True)
    if frame["customer_id"].duplicated().any():
        raise ValueError("build_exclusions: duplicate customer_id")
    holdout = None
    if holdout_evidence is not None:
        holdout = holdout_evidence.set_index("customer_id")[HOLDOUT_COLUMN]

    parts: list[pd.DataFrame] = []
    thresholds: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    impossible: dict[str, str] = {}
    notes: dict[str, str] = {}
    for audience in AUDIENCES:
        try:
            member, reason, th, note = RULES[audience](frame, cfg_all[audience], holdout)
        except _Impossible as exc:
            impossible[audience] = str(exc)
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
        if holdout is not None and audience == "organic_inevitable":
            part[HOLDOUT_COLUMN] = holdout.reindex(part["customer_id"]).to_numpy(
                dtype=float, na_value=np.nan
            )
        part["reason"] = reason  # composed for the members only
        parts.append(part)

    columns = ["customer_id", "audience", *EVIDENCE_COLUMNS, "reason"]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    extra = [c for c in table.columns if c not in columns]
    table = table[[*columns[:-1], *extra, "reason"]]
    return ExclusionResult(table, thresholds, sizes, impossible, notes)


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
