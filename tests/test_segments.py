import copy

import numpy as np
import pandas as pd
import pytest

from dagster_project.lib.segments import (
    DEFAULT_SEGMENT,
    PLAYBOOK_FIELDS,
    SEGMENTS,
    assign_segments,
    attach_playbook,
    load_config,
    load_playbook,
    min_segment_size,
)

ALL_SOURCES = {"web": True, "ads": True, "returns": True, "support": True}
CRM_ONLY = {"web": False, "ads": False, "returns": False, "support": False}


def make_frame(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    """A synthetic partition: scores, value and web features with realistic overlaps."""
    rng = np.random.default_rng(seed)
    state = rng.choice(
        ["prospect", "new", "active", "lapsing", "churned"], size=n, p=[0.2, 0.1, 0.4, 0.15, 0.15]
    )
    buyer = state != "prospect"
    orders_lifetime = np.where(buyer, np.where(state == "new", 1, rng.integers(1, 12, n)), 0)
    orders_365d = np.where(buyer, np.minimum(orders_lifetime, rng.integers(0, 8, n)), 0)
    revenue = np.where(orders_365d > 0, rng.lognormal(5, 0.8, n) * orders_365d, 0.0)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "lifecycle_state": state,
            "aov_tier": "low",
            "category_family": "home",
            "marketing_consent": rng.random(n) < 0.8,
            "orders_lifetime": orders_lifetime.astype(float),
            "orders_365d": orders_365d.astype(float),
            "orders_30d": np.where(buyer, rng.poisson(0.2, n), 0).astype(float),
            "revenue_365d": revenue,
            "contribution_margin_365d": revenue * rng.normal(0.3, 0.2, n),
            "discount_order_share": np.where(buyer, rng.beta(0.6, 1.2, n), np.nan),
            "product_views_30d": rng.poisson(2, n).astype(float),
            "add_to_cart_30d": rng.poisson(0.5, n).astype(float),
            "checkout_starts_30d": rng.poisson(0.2, n).astype(float),
            "abandoned_checkouts_30d": rng.poisson(0.1, n).astype(float),
            "trust_view_share_90d": np.where(rng.random(n) < 0.5, rng.beta(1, 4, n), 0.0),
        }
    )
    for target in ("purchase_7d", "purchase_30d", "cross_sell_60d", "return_60d"):
        frame[f"{target}_score"] = np.where(buyer, rng.beta(2, 5, n), np.nan)
    frame["repeat_90d_score"] = np.where(orders_lifetime == 1, rng.beta(2, 6, n), np.nan)
    frame["churn_90d_score"] = np.where(orders_365d > 0, rng.beta(2, 4, n), np.nan)
    frame["discount_next_order_score"] = np.where(buyer, rng.beta(2, 3, n), np.nan)
    return frame


def small_min_config(**overrides) -> dict:
    config = copy.deepcopy(load_config())
    config["min_segment_size"] = 50
    config.pop("min_segment_base_share")  # an explicit size, as a run config gives it
    config.update(overrides)
    return config


def test_the_minimum_segment_size_scales_with_a_small_base_and_keeps_its_floor_and_cap():
    config = load_config()
    assert min_segment_size(config, 1_000_000) == config["min_segment_size"] == 500
    assert min_segment_size(config, 20_000) == 500
    assert min_segment_size(config, 3_000) == 75
    assert min_segment_size(config, 1_500) == config["min_segment_floor"] == 50
    explicit = {**config, "min_segment_size": 10}
    assert min_segment_size(explicit, 100) == 10  # the floor never exceeds the size
    without = {k: v for k, v in config.items() if k != "min_segment_base_share"}
    assert min_segment_size(without, 1_500) == 500


def test_every_customer_gets_exactly_the_first_flagged_segment_in_priority_order():
    config = small_min_config()
    result = assign_segments(make_frame(), config, ALL_SOURCES)
    table = result.table
    assert table["customer_id"].is_unique and len(table) == 6000
    expected = np.select(
        [table[f"in_{s}"] for s in config["priority"]], config["priority"], DEFAULT_SEGMENT
    )
    assert (table["primary_segment"].to_numpy() == expected).all()
    # The check is not vacuous: some customers qualify for several segments.
    assert (table[[f"in_{s}" for s in SEGMENTS]].sum(axis=1) >= 2).sum() > 50


def test_changing_the_priority_order_changes_the_primary_of_overlapping_customers():
    frame = make_frame()
    base = assign_segments(frame, small_min_config(), ALL_SOURCES).table
    flipped_priority = list(reversed(load_config()["priority"]))
    flipped = assign_segments(frame, small_min_config(priority=flipped_priority), ALL_SOURCES).table
    both = base["in_likely_to_churn"] & base["in_high_ltv_lookalike_seed"]
    assert both.sum() > 0
    assert (base.loc[both, "primary_segment"] == "likely_to_churn").all()
    assert (flipped.loc[both, "primary_segment"] == "high_ltv_lookalike_seed").all()


def test_membership_flags_are_consistent_with_the_primary_segment():
    table = assign_segments(make_frame(), small_min_config(), ALL_SOURCES).table
    flags = table[[f"in_{s}" for s in SEGMENTS]]
    for seg in SEGMENTS:
        assert table.loc[table["primary_segment"] == seg, f"in_{seg}"].all()
    assert not flags[table["primary_segment"] == DEFAULT_SEGMENT].any(axis=None)
    assert table["segment_reason"].str.len().gt(0).all()


def test_every_segment_is_populated_and_reasons_quote_the_evidence():
    result = assign_segments(make_frame(), small_min_config(), ALL_SOURCES)
    assert all(result.sizes[s] > 0 for s in SEGMENTS), result.sizes
    assert not result.merged and not result.impossible
    churn = result.table[result.table["primary_segment"] == "likely_to_churn"]
    assert churn["segment_reason"].str.match(r"churn risk 0\.\d\d \(top \d+%\), \d+ EUR").all()


def test_score_cuts_move_when_the_score_distribution_shifts():
    frame = make_frame()
    shifted = frame.copy()
    shifted["purchase_30d_score"] = shifted["purchase_30d_score"] * 0.5 + 0.4
    shifted["churn_90d_score"] = shifted["churn_90d_score"] ** 2
    a = assign_segments(frame, small_min_config(), ALL_SOURCES)
    b = assign_segments(shifted, small_min_config(), ALL_SOURCES)
    cut_a = a.thresholds["ready_to_repeat"]["purchase_30d_cut_repeat_buyers"]
    cut_b = b.thresholds["ready_to_repeat"]["purchase_30d_cut_repeat_buyers"]
    assert cut_b == pytest.approx(cut_a * 0.5 + 0.4)  # a monotone shift moves the quantile
    assert b.thresholds["likely_to_churn"]["churn_90d_cut"] == pytest.approx(
        a.thresholds["likely_to_churn"]["churn_90d_cut"] ** 2
    )
    # Calibrated: the same customers are selected, because only the scale moved.
    assert (a.table["in_ready_to_repeat"] == b.table["in_ready_to_repeat"]).all()


def test_a_segment_below_the_minimum_size_is_merged_with_a_reason():
    config = small_min_config(min_segment_size=200)
    config["segments"]["high_ltv_lookalike_seed"]["value_quantile"] = 0.995
    result = assign_segments(make_frame(), config, ALL_SOURCES)
    assert "high_ltv_lookalike_seed" in result.merged
    assert "minimum 200" in result.merged["high_ltv_lookalike_seed"]
    table = result.table
    assert not table["in_high_ltv_lookalike_seed"].any()
    assert (table["primary_segment"] != "high_ltv_lookalike_seed").all()
    assert result.sizes["high_ltv_lookalike_seed"] == 0
    assert all(result.sizes[s] >= 200 for s in SEGMENTS if s not in result.merged)
    assert table["segment_reason"].str.contains("too small to test").any()


def test_minimum_size_as_a_share_of_customers_merges_everything_when_too_strict():
    config = small_min_config(min_segment_share=0.9)
    result = assign_segments(make_frame(), config, ALL_SOURCES)
    assert set(result.merged) == set(SEGMENTS)
    assert (result.table["primary_segment"] == DEFAULT_SEGMENT).all()


def test_crm_only_brand_reports_high_intent_low_trust_as_impossible():
    frame = make_frame()
    for col in (
        "product_views_30d",
        "add_to_cart_30d",
        "checkout_starts_30d",
        "abandoned_checkouts_30d",
        "trust_view_share_90d",
    ):
        frame[col] = 0.0
    result = assign_segments(frame, small_min_config(), CRM_ONLY)
    assert "high_intent_low_trust" in result.impossible
    assert "web" in result.impossible["high_intent_low_trust"]
    assert not result.table["in_high_intent_low_trust"].any()
    assert "high_intent_low_trust" not in result.thresholds
    # the rest still works on CRM data alone
    assert result.sizes["ready_to_repeat"] > 0 and result.sizes["likely_to_churn"] > 0


def test_web_source_present_but_empty_is_also_impossible_not_an_empty_segment():
    frame = make_frame()
    frame["trust_view_share_90d"] = np.nan
    result = assign_segments(frame, small_min_config(), ALL_SOURCES)
    assert "trust" in result.impossible["high_intent_low_trust"]


def test_deal_triggered_is_not_computed_when_the_discount_model_is_absent():
    frame = make_frame()
    frame["discount_next_order_score"] = np.nan
    result = assign_segments(frame, small_min_config(), ALL_SOURCES)
    assert "discount_next_order" in result.impossible["deal_triggered"]
    assert not result.table["in_deal_triggered"].any()
    assert "deal_triggered" not in result.merged


def test_one_order_customers_are_ranked_by_repeat_propensity():
    frame = make_frame()
    result = assign_segments(frame, small_min_config(), ALL_SOURCES)
    cut = result.thresholds["ready_to_repeat"]["score_cut_one_order"]
    one_order = frame["orders_lifetime"].eq(1) & frame["lifecycle_state"].isin(
        ["new", "active", "lapsing"]
    )
    picked = result.table["in_ready_to_repeat"] & one_order
    assert picked.any()
    assert (frame.loc[picked, "repeat_90d_score"] >= cut).all()
    assert (
        "repeat chance 90d"
        in result.table.loc[
            picked & (result.table["primary_segment"] == "ready_to_repeat"), "segment_reason"
        ].iloc[0]
    )


def test_every_segment_has_a_complete_versioned_playbook_entry():
    config = load_config()
    playbook = load_playbook()
    assert str(playbook["version"]).strip()
    for seg in [*config["priority"], config["default_segment"]]:
        entry = playbook["segments"][seg]
        for f in PLAYBOOK_FIELDS:
            assert str(entry[f]).strip(), (seg, f)
        assert entry["speed"] in ("performance", "strategic")


def test_attach_playbook_tells_every_row_what_to_do():
    result = assign_segments(make_frame(), small_min_config(), ALL_SOURCES)
    playbook = load_playbook()
    out = attach_playbook(result.table, playbook)
    assert len(out) == len(result.table)
    assert out["playbook_angle"].notna().all()
    assert (out["playbook_version"] == playbook["version"]).all()
    repeaters = out[out["primary_segment"] == "ready_to_repeat"]
    assert (repeaters["playbook_speed"] == "performance").all()


def test_attach_playbook_refuses_a_segment_without_an_entry():
    result = assign_segments(make_frame(), small_min_config(), ALL_SOURCES)
    playbook = copy.deepcopy(load_playbook())
    del playbook["segments"]["likely_to_churn"]
    with pytest.raises(ValueError, match="likely_to_churn"):
        attach_playbook(result.table, playbook)


def test_model_cuts_rank_by_log_odds_so_a_calibration_step_is_not_taken_whole():
    """Isotonic calibration makes steps: here a third of the repeat buyers share one
    calibrated purchase_30d_score. Ranked by that score, the top-20% cut takes the whole step;
    ranked by the model's log-odds (the same order, ties broken) it takes 20%."""
    frame = make_frame()
    rng = np.random.default_rng(1)
    log_odds = np.where(frame["purchase_30d_score"].notna(), rng.normal(-1.0, 1.0, len(frame)),
                        np.nan)
    # a monotone step map: everything between the 60th and 95th percentile is one step
    lo, hi = np.nanquantile(log_odds, [0.6, 0.95])
    calibrated = np.where(log_odds < lo, 0.1, np.where(log_odds < hi, 0.3, 0.6))
    frame["purchase_30d_score"] = np.where(np.isfinite(log_odds), calibrated, np.nan)
    config = small_min_config()
    eligible = (frame["lifecycle_state"].isin(config["segments"]["ready_to_repeat"]["states"])
                & (frame["orders_lifetime"] >= 2)).to_numpy()

    by_score = assign_segments(frame, config, ALL_SOURCES)
    frame["purchase_30d_log_odds"] = log_odds
    by_log_odds = assign_segments(frame, config, ALL_SOURCES)

    def share(result):
        return result.table["in_ready_to_repeat"].to_numpy()[eligible].mean()

    assert share(by_score) > 0.35  # the whole 0.3 step and above
    assert share(by_log_odds) == pytest.approx(0.2, abs=0.002)
    th = by_log_odds.thresholds["ready_to_repeat"]
    cut = th["purchase_30d_log_odds_cut_repeat_buyers"]
    assert cut == pytest.approx(np.quantile(log_odds[eligible], 0.8))
    # the calibrated figure reported is the lowest probability selected: the 0.3 step
    assert th["purchase_30d_cut_repeat_buyers"] == 0.3
    assert "purchase_30d_log_odds_cut_repeat_buyers" not in by_score.thresholds["ready_to_repeat"]


def test_the_status_table_says_which_segment_stands_was_merged_or_is_impossible():
    config = small_min_config(min_segment_size=200)
    config["segments"]["high_ltv_lookalike_seed"]["value_quantile"] = 0.995
    result = assign_segments(make_frame(), config, CRM_ONLY)
    status = result.status_table().set_index("segment")
    assert list(status.index) == list(SEGMENTS)
    assert status.loc["high_ltv_lookalike_seed", "status"] == "merged"
    assert 0 < status.loc["high_ltv_lookalike_seed", "primary_customers"] < 200
    assert status.loc["high_intent_low_trust", "status"] == "impossible"
    assert "web" in status.loc["high_intent_low_trust", "reason"]
    standing = status[status["status"] == "stands"]
    assert (standing["primary_customers"] >= 200).all()
    assert (status["minimum"] == 200).all()
