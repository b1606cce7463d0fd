import copy

import numpy as np
import pandas as pd
import pytest

from dagster_project.lib.exclusions import (
    AUDIENCES,
    EVIDENCE,
    HoldoutEvidence,
    activation_audiences,
    build_exclusions,
)
from dagster_project.lib.segments import SEGMENTS, assign_segments, load_config

ALL_SOURCES = {"web": True, "ads": True, "returns": True, "support": True}


def constructed_frame(n_background: int = 4000, n_planted: int = 150, seed: int = 0):
    """Ordinary customers plus three planted do-not-target archetypes (column `planted`)."""
    rng = np.random.default_rng(seed)
    kinds = np.repeat(["background", *AUDIENCES], [n_background, n_planted, n_planted, n_planted])
    n = len(kinds)
    org, mar, cre = (kinds == a for a in AUDIENCES)

    orders_365d = rng.poisson(2.0, n) + 1
    orders_365d = np.where(org, rng.integers(6, 16, n), orders_365d)
    orders_365d = np.where(mar, rng.integers(2, 6, n), orders_365d)
    revenue = orders_365d * rng.lognormal(4.2, 0.5, n)
    margin = revenue * rng.normal(0.3, 0.12, n)
    # planted destroyers lose materially (more than a typical repeat buyer earns)
    margin = np.where(mar, -revenue * rng.uniform(0.5, 1.2, n), margin)
    unpaid = np.where(org, 1.0, rng.beta(2, 3, n))  # planted: no order ever had a paid touch
    return_rate = np.where(mar, rng.uniform(0.6, 0.95, n), rng.beta(1, 9, n))
    impressions = np.where(rng.random(n) < 0.6, rng.poisson(8, n), 0)
    impressions = np.where(cre, rng.integers(40, 150, n), impressions)
    impressions = np.where(org, rng.poisson(2, n), impressions)
    clicks = np.where(cre, 0, rng.binomial(impressions, 0.05))
    sessions = np.where(cre, 0, rng.poisson(1.5, n))
    orders_30d = np.where(cre, 0, rng.poisson(0.3, n))

    frame = pd.DataFrame(
        {
            "customer_id": [f"k{i:05d}" for i in range(n)],
            "lifecycle_state": "active",
            "marketing_consent": rng.random(n) < 0.75,
            "orders_lifetime": orders_365d + rng.integers(0, 3, n),
            "orders_365d": orders_365d.astype(float),
            "paid_orders_365d": np.round(orders_365d * (1 - unpaid)),
            "unpaid_order_share": unpaid,
            "revenue_365d": revenue,
            "contribution_margin_365d": margin,
            "margin_per_order_365d": margin / orders_365d,
            "return_rate_365d": return_rate,
            "refund_share_365d": return_rate * 0.9,
            "discount_rate": np.where(mar, rng.uniform(0.3, 0.5, n), rng.beta(1, 10, n)),
            "support_minutes_365d": np.where(mar, rng.gamma(4, 20, n), rng.gamma(1, 5, n)),
            "purchase_30d_score": np.where(org, rng.beta(9, 2, n), rng.beta(2, 5, n)),
            "return_60d_score": np.where(mar, rng.beta(6, 2, n), rng.beta(1, 6, n)),
            "impressions_30d": impressions.astype(float),
            "exposure_days_30d": np.minimum(impressions, 30).astype(float),
            "clicks_30d": clicks.astype(float),
            "sessions_30d": sessions.astype(float),
            "orders_30d": orders_30d.astype(float),
            "planted": kinds,
        }
    )
    # tenure: background customers of any age, planted organic ones established (> 200 days)
    age = np.where(org, rng.integers(200, 1500, n), rng.integers(0, 1500, n))
    frame["customer_age_days"] = age.astype(float)
    frame["days_since_first_order"] = np.minimum(age, rng.integers(30, 365, n)).astype(float)
    return frame


def _precision_recall(frame, result, audience):
    found = set(result.table.loc[result.table["audience"] == audience, "customer_id"])
    truth = set(frame.loc[frame["planted"] == audience, "customer_id"])
    hit = len(found & truth)
    return hit / max(len(found), 1), hit / len(truth)


@pytest.mark.parametrize("audience", AUDIENCES)
def test_planted_do_not_target_customers_are_found_with_high_precision_and_recall(audience):
    frame = constructed_frame()
    result = build_exclusions(frame, load_config())
    precision, recall = _precision_recall(frame, result, audience)
    assert precision >= 0.8, (audience, precision, result.thresholds)
    assert recall >= 0.6, (audience, recall, result.thresholds)
    assert result.sizes[audience] == (result.table["audience"] == audience).sum()


def test_every_audience_row_carries_its_evidence_and_a_reason():
    frame = constructed_frame()
    result = build_exclusions(frame, load_config())
    for audience, columns in EVIDENCE.items():
        rows = result.table[result.table["audience"] == audience]
        assert len(rows) > 0
        assert set(columns) <= set(result.table.columns)
        assert rows[list(columns)].notna().all(axis=None), audience
        assert rows["reason"].str.len().gt(20).all()
    destroyers = result.table[result.table["audience"] == "margin_destroyer"]
    assert (destroyers["contribution_margin_365d"] < 0).all()
    assert (destroyers["orders_365d"] >= 2).all()


def test_exclusion_cuts_are_learned_from_the_partition():
    frame = constructed_frame()
    a = build_exclusions(frame, load_config())
    lifted = frame.copy()
    lifted["purchase_30d_score"] = np.sqrt(lifted["purchase_30d_score"])
    lifted["impressions_30d"] = lifted["impressions_30d"] * 3
    b = build_exclusions(lifted, load_config())
    cut_a = a.thresholds["organic_inevitable"]["purchase_30d_cut"]
    assert b.thresholds["organic_inevitable"]["purchase_30d_cut"] == pytest.approx(np.sqrt(cut_a))
    assert (
        b.thresholds["creative_resistant"]["impressions_30d_cut"]
        > a.thresholds["creative_resistant"]["impressions_30d_cut"]
    )


def test_creative_resistant_needs_a_minimum_number_of_impressions():
    frame = constructed_frame()
    frame["impressions_30d"] = np.minimum(frame["impressions_30d"], 5)  # nobody heavily exposed
    result = build_exclusions(frame, load_config())
    assert result.thresholds["creative_resistant"]["impressions_30d_cut"] >= 20
    assert result.sizes["creative_resistant"] == 0


def test_a_crm_only_brand_reports_creative_resistant_impossible_and_margin_rule_reduced():
    frame = constructed_frame()
    for col in ("impressions_30d", "clicks_30d", "exposure_days_30d", "sessions_30d"):
        frame[col] = 0.0
    frame["return_rate_365d"] = 0.0
    frame["return_60d_score"] = np.nan
    result = build_exclusions(frame, load_config())
    assert "creative_resistant" in result.impossible
    assert "no return evidence" in result.notes["margin_destroyer"]
    found = result.table[result.table["audience"] == "margin_destroyer"]
    assert (found["contribution_margin_365d"] < 0).all() and len(found) > 0


def _organic(result):
    return set(result.table.loc[result.table["audience"] == "organic_inevitable", "customer_id"])


def test_a_young_customer_with_an_organic_looking_history_is_not_an_organic_inevitable():
    frame = constructed_frame()
    base = _organic(build_exclusions(frame, load_config()))
    tenure = load_config()["exclusions"]["organic_inevitable"]["min_tenure_days"]
    young = frame["customer_id"].isin(sorted(base)[:40])
    frame.loc[young, "customer_age_days"] = tenure - 1  # same orders, a customer for < tenure
    frame.loc[young, "days_since_first_order"] = tenure - 1
    found = _organic(build_exclusions(frame, load_config()))
    assert not found & set(frame.loc[young, "customer_id"])
    assert found == base - set(frame.loc[young, "customer_id"])


def test_order_frequency_is_a_rate_over_the_days_seen_not_a_365_day_count():
    frame = constructed_frame()
    cut = build_exclusions(frame, load_config()).thresholds["organic_inevitable"]["order_rate_cut"]
    # a planted organic customer seen for 200 days, buying at 1.5x the cut's pace: fewer orders
    # than the cut counts over a year, but the same habit
    i = frame.index[frame["planted"] == "organic_inevitable"][0]
    frame.loc[i, ["customer_age_days", "days_since_first_order"]] = [199.0, 190.0]
    frame.loc[i, "orders_365d"] = np.ceil(1.5 * cut * 200 / 365)
    assert frame.loc[i, "orders_365d"] < cut
    result = build_exclusions(frame, load_config())
    assert frame.loc[i, "customer_id"] in _organic(result)
    row = result.table[result.table["customer_id"] == frame.loc[i, "customer_id"]]
    assert "in the 200 days seen" in row["reason"].iloc[0]
    assert "customer for 199 days" in row["reason"].iloc[0]
    # a warehouse holding 181 days of orders: every rate is over at most 181 days seen, and
    # the planted customers are still found
    short = constructed_frame()
    short["days_since_first_order"] = short["days_since_first_order"].clip(upper=180)
    short_result = build_exclusions(short, load_config())
    assert short_result.thresholds["organic_inevitable"]["order_history_days"] == 181
    precision, recall = _precision_recall(short, short_result, "organic_inevitable")
    assert precision >= 0.8 and recall >= 0.6, (precision, recall)


def test_a_frequent_organic_buyer_who_just_ordered_is_likely_to_buy_again_a_lapsed_one_not():
    frame = constructed_frame()
    cut = build_exclusions(frame, load_config()).thresholds["organic_inevitable"]
    planted = frame.index[frame["planted"] == "organic_inevitable"][:2]
    just_ordered, lapsed = frame.loc[planted, "customer_id"]
    # both with a low 30-day chance; one bought a few days ago (on schedule), one is 3
    # intervals overdue
    frame.loc[planted, "purchase_30d_score"] = cut["purchase_30d_cut"] / 2
    frame.loc[planted, "overdue_ratio"] = [0.1, 3.0]
    result = build_exclusions(frame, load_config())
    assert just_ordered in _organic(result) and lapsed not in _organic(result)
    row = result.table[result.table["customer_id"] == just_ordered]
    assert "0.1x their usual interval (on schedule <= 1)" in row["reason"].iloc[0]


def test_organic_inevitable_is_impossible_without_customer_tenure():
    frame = constructed_frame().drop(columns=["customer_age_days"])
    result = build_exclusions(frame, load_config())
    assert "customer_age_days" in result.impossible["organic_inevitable"]
    assert result.sizes["organic_inevitable"] == 0 and result.sizes["margin_destroyer"] > 0


def test_holdout_evidence_that_paid_media_moves_the_organic_profile_withholds_the_audience():
    frame = constructed_frame()
    base = build_exclusions(frame, load_config())
    assert len(_organic(base)) > 0
    evidence = {"status": "ok", "relative_lift": 0.45, "lo": 0.12, "hi": 0.85,
                "n_treated": 900, "n_holdout": 100, "n_incomplete": 7}  # extra keys ignored
    result = build_exclusions(frame, load_config(), holdout_evidence=evidence)
    assert result.sizes["organic_inevitable"] == 0 and not _organic(result)
    reason = result.withheld["organic_inevitable"]
    assert reason == result.notes["organic_inevitable"]
    assert reason.startswith("withheld") and "+45%" in reason and "+12% to +85%" in reason
    assert "900 treated, 100 held out" in reason
    assert result.metadata()["organic_inevitable_holdout_evidence"]["lo"] == 0.12
    # the learned cuts are still reported, and the other audiences are untouched
    assert result.thresholds["organic_inevitable"] == base.thresholds["organic_inevitable"]
    for audience in ("margin_destroyer", "creative_resistant"):
        assert result.sizes[audience] == base.sizes[audience]


@pytest.mark.parametrize("evidence", [
    # measured, but the interval reaches zero: no demonstrated lift
    HoldoutEvidence("ok", relative_lift=0.08, lo=-0.10, hi=0.30, n_treated=700, n_holdout=80),
    # measured: paid media does nothing for them
    HoldoutEvidence("ok", relative_lift=-0.02, lo=-0.15, hi=0.13, n_treated=700, n_holdout=80),
])
def test_holdout_evidence_without_a_demonstrated_lift_keeps_the_audience_with_its_evidence(evidence):
    frame = constructed_frame()
    base = build_exclusions(frame, load_config())
    result = build_exclusions(frame, load_config(), holdout_evidence=evidence)
    assert _organic(result) == _organic(base) and not result.withheld
    note = result.notes["organic_inevitable"]
    assert "the audience stands" in note and f"{evidence.lo:+.0%}" in note
    rows = result.table[result.table["audience"] == "organic_inevitable"]
    assert rows["reason"].str.endswith(f"; {evidence.text()}").all()
    assert "700 treated, 80 held out" in rows["reason"].iloc[0]


def test_holdout_evidence_without_an_estimate_or_without_a_log_leaves_the_rule_as_it_was():
    frame = constructed_frame()
    base = build_exclusions(frame, load_config())
    few = {"status": "not enough data yet: 40 treated and 3 holdout members with a complete "
                     "30-day window, need 50 in each", "n_treated": 40, "n_holdout": 3,
           "relative_lift": float("nan")}
    result = build_exclusions(frame, load_config(), holdout_evidence=few)
    assert _organic(result) == _organic(base)
    assert "rule stands on propensity and history alone" in result.notes["organic_inevitable"]
    assert "40 treated and 3 holdout" in result.notes["organic_inevitable"]
    rows = result.table[result.table["audience"] == "organic_inevitable"]
    assert rows["reason"].str.contains("not enough data yet: 40 treated", regex=False).all()
    none = build_exclusions(frame, load_config())
    assert "no holdout evidence yet" in none.notes["organic_inevitable"]
    assert "rule stands on propensity and history alone" in none.notes["organic_inevitable"]
    assert none.metadata()["organic_inevitable_holdout_evidence"] is None


def _random_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Anything goes: random states, scores with holes, sparse features, random consent."""
    nan_holes = rng.random(n) < 0.1
    frame = pd.DataFrame(
        {
            "customer_id": rng.permutation(n).astype(str),
            "lifecycle_state": rng.choice(["prospect", "new", "active", "lapsing", "churned"], n),
            "marketing_consent": rng.random(n) < rng.uniform(0.1, 0.9),
            "orders_lifetime": rng.poisson(2, n).astype(float),
            "orders_365d": rng.poisson(1.5, n).astype(float),
            "orders_30d": rng.poisson(0.2, n).astype(float),
            "revenue_365d": rng.gamma(1, 200, n),
            "contribution_margin_365d": rng.normal(20, 60, n),
            "unpaid_order_share": rng.random(n),
            "return_rate_365d": rng.beta(1, 4, n),
            "discount_order_share": rng.random(n),
            "impressions_30d": rng.poisson(rng.uniform(1, 30), n).astype(float),
            "clicks_30d": rng.binomial(1, 0.3, n).astype(float),
            "sessions_30d": rng.poisson(0.5, n).astype(float),
            "product_views_30d": rng.poisson(1, n).astype(float),
            "trust_view_share_90d": rng.random(n) * (rng.random(n) < 0.4),
        }
    )
    for target in ("purchase_30d", "repeat_90d", "churn_90d", "discount_next_order", "return_60d"):
        frame[f"{target}_score"] = np.where(nan_holes, np.nan, rng.random(n))
    return frame


def test_opted_out_customer_is_in_no_activation_audience_whatever_the_data():
    config = copy.deepcopy(load_config())
    config["min_segment_size"] = 10
    for seed in range(25):
        rng = np.random.default_rng(seed)
        frame = _random_frame(rng, int(rng.integers(200, 800)))
        segments = assign_segments(frame, config, ALL_SOURCES)
        exclusions = build_exclusions(frame, config)
        consent = frame.set_index("customer_id")["marketing_consent"]
        act = activation_audiences(segments.table, exclusions, consent).set_index("customer_id")
        opted_out = consent.index[~consent.to_numpy()]
        rows = act.loc[opted_out]
        assert not rows["activation_eligible"].any(), seed
        assert rows["activation_segment"].isna().all(), seed
        assert not rows[[f"activate_{s}" for s in SEGMENTS]].any(axis=None), seed
        assert (rows["not_activated_reason"] == "no marketing consent").all(), seed
        # excluded customers are out of activation too, consent or not
        excluded = act["exclusion_audiences"] != ""
        assert not act.loc[excluded, "activation_eligible"].any(), seed
        # and the filter is not vacuous: some consenting, non-excluded customers are active
        assert act["activation_eligible"].any(), seed
        assert (act["activation_eligible"] == (act["marketing_consent"] & ~excluded)).all()


def test_customer_missing_from_the_consent_list_is_not_activated():
    frame = constructed_frame(n_background=600, n_planted=20)
    config = copy.deepcopy(load_config())
    config["min_segment_size"] = 10
    segments = assign_segments(frame, config, ALL_SOURCES)
    consent = pd.DataFrame({"customer_id": frame["customer_id"], "marketing_consent": True})
    consent = consent.iloc[100:]  # the first 100 customers have no consent record
    act = activation_audiences(segments.table, build_exclusions(frame, config), consent)
    assert not act["activation_eligible"].iloc[:100].any()
    assert act["activation_eligible"].iloc[100:].any()


def test_consent_given_as_text_is_refused_rather_than_read_as_true():
    frame = constructed_frame(n_background=300, n_planted=10)
    config = copy.deepcopy(load_config())
    config["min_segment_size"] = 10
    segments = assign_segments(frame, config, ALL_SOURCES)
    consent = pd.Series("false", index=frame["customer_id"])
    with pytest.raises(TypeError):
        activation_audiences(segments.table, build_exclusions(frame, config), consent)


def test_a_loss_smaller_than_a_typical_repeat_buyers_margin_is_not_a_margin_destroyer():
    n = 400
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "customer_id": [f"C{i:04d}" for i in range(n)],
        "orders_lifetime": np.full(n, 4.0),
        "orders_365d": np.full(n, 4.0),
        "contribution_margin_365d": rng.normal(100, 20, n),
        "return_rate_365d": np.full(n, 0.5),
        "return_60d_score": np.full(n, 0.9),
    })
    frame.loc[0, "contribution_margin_365d"] = -5.0      # a rounding error of a loss
    frame.loc[1, "contribution_margin_365d"] = -400.0    # a material loss
    result = build_exclusions(frame, load_config())
    members = set(result.table.loc[result.table["audience"] == "margin_destroyer", "customer_id"])
    assert "C0001" in members and "C0000" not in members
    assert result.thresholds["margin_destroyer"]["margin_below"] < -50


def test_model_cuts_of_exclusions_rank_by_log_odds_when_the_scores_carry_them():
    """Calibrated scores in steps of 0.1 (as isotonic calibration makes them): the purchase
    and return cuts are taken on the log-odds, so customers on one step are split by the
    model's own order, and the calibrated figure reported is the lowest one selected."""
    frame = constructed_frame()
    cfg = load_config()
    buyers = (frame["orders_lifetime"] > 0).to_numpy()
    for target in ("purchase_30d", "return_60d"):
        p = frame[f"{target}_score"].clip(1e-6, 1 - 1e-6)
        frame[f"{target}_log_odds"] = np.log(p / (1 - p))
        frame[f"{target}_score"] = p.round(1)
    result = build_exclusions(frame, cfg)
    for audience, target, q in (
        ("organic_inevitable", "purchase_30d", cfg["exclusions"]["organic_inevitable"]
         ["purchase_quantile"]),
        ("margin_destroyer", "return_60d", cfg["exclusions"]["margin_destroyer"]
         ["return_quantile"]),
    ):
        th = result.thresholds[audience]
        log_odds = frame[f"{target}_log_odds"].to_numpy()
        cut = np.quantile(log_odds[buyers], q)
        assert th[f"{target}_log_odds_cut"] == pytest.approx(cut)
        selected = buyers & (log_odds >= cut)
        assert th[f"{target}_cut"] == frame.loc[selected, f"{target}_score"].min()
        # the step at the reported cut is split: some of it lies below the log-odds cut
        on_step = frame[f"{target}_score"].to_numpy() == th[f"{target}_cut"]
        assert (on_step & buyers & ~selected).any() and (on_step & selected).any()
    organic = result.table.loc[result.table["audience"] == "organic_inevitable", "customer_id"]
    chosen = frame.set_index("customer_id").loc[organic, "purchase_30d_log_odds"]
    assert len(chosen) > 50
    assert (chosen >= result.thresholds["organic_inevitable"]["purchase_30d_log_odds_cut"]).all()
