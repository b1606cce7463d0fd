import json

import numpy as np
import pandas as pd
import pytest

from dagster_project.lib.rules import (
    FALLBACK_CHURNED_DAYS,
    FALLBACK_LAPSING_DAYS,
    FALLBACK_NEW_WINDOW_DAYS,
    LIFECYCLE_STATES,
    RuleThresholds,
    assign_states,
    learn_thresholds,
    state_counts,
)

RNG = np.random.default_rng(7)
INTERVALS = RNG.gamma(shape=2.0, scale=20.0, size=5_000)  # mean 40 days
VALUES = RNG.lognormal(mean=4.0, sigma=0.5, size=5_000)


def _thresholds(**overrides) -> RuleThresholds:
    base = dict(
        lapsing_days=60.0,
        churned_days=120.0,
        new_window_days=30.0,
        aov_high_cut=100.0,
        lapsing_quantile=0.75,
        churned_quantile=0.95,
        new_window_quantile=0.5,
        aov_quantile=0.7,
        n_intervals=1000,
        n_orders=1000,
        source="learned",
    )
    base.update(overrides)
    return RuleThresholds(**base)


def _customer(cid, orders, d_last, d_first, aov, top_category=None):
    return {
        "customer_id": cid,
        "orders_lifetime": orders,
        "days_since_last_order": d_last,
        "days_since_first_order": d_first,
        "aov_lifetime": aov,
        "top_category": top_category,
    }


def test_thresholds_are_the_stated_quantiles_of_the_data():
    th = learn_thresholds(INTERVALS, VALUES)
    assert th.source == "learned"
    assert th.lapsing_days == pytest.approx(np.quantile(INTERVALS, 0.75))
    assert th.churned_days == pytest.approx(np.quantile(INTERVALS, 0.95))
    assert th.new_window_days == pytest.approx(np.median(INTERVALS))
    assert th.aov_high_cut == pytest.approx(np.quantile(VALUES, 0.7))
    assert th.n_intervals == INTERVALS.size and th.n_orders == VALUES.size


def test_thresholds_move_when_customers_buy_less_often():
    slow = learn_thresholds(INTERVALS * 2, VALUES)
    fast = learn_thresholds(INTERVALS, VALUES)
    assert slow.lapsing_days == pytest.approx(2 * fast.lapsing_days)
    assert slow.churned_days == pytest.approx(2 * fast.churned_days)
    assert slow.new_window_days == pytest.approx(2 * fast.new_window_days)


def test_quantiles_are_parameters():
    th = learn_thresholds(INTERVALS, VALUES, lapsing_quantile=0.6, churned_quantile=0.9,
                          aov_quantile=0.5)
    assert th.lapsing_days == pytest.approx(np.quantile(INTERVALS, 0.6))
    assert th.churned_days == pytest.approx(np.quantile(INTERVALS, 0.9))
    assert th.aov_high_cut == pytest.approx(np.median(VALUES))


def test_too_few_intervals_fall_back_to_stated_days_and_say_so():
    th = learn_thresholds(INTERVALS[:10], VALUES)
    assert (th.lapsing_days, th.churned_days, th.new_window_days) == (
        FALLBACK_LAPSING_DAYS,
        FALLBACK_CHURNED_DAYS,
        FALLBACK_NEW_WINDOW_DAYS,
    )
    assert "fallback" in th.source and "10 intervals" in th.source
    assert th.aov_high_cut == pytest.approx(np.quantile(VALUES, 0.7))


def test_bad_intervals_are_ignored_not_counted():
    dirty = np.concatenate([INTERVALS, [np.nan, -5.0, np.inf]])
    assert learn_thresholds(dirty, VALUES).n_intervals == INTERVALS.size


def test_too_few_order_values_give_no_aov_tier_rather_than_a_made_up_cut():
    th = learn_thresholds(INTERVALS, VALUES[:5])
    assert np.isnan(th.aov_high_cut)
    assert "aov" in th.source
    states = assign_states(pd.DataFrame([_customer(1, 3, 10, 200, 500.0)]), th)
    assert states["aov_tier"].tolist() == ["none"]


def test_inverted_quantiles_are_rejected():
    with pytest.raises(ValueError):
        learn_thresholds(INTERVALS, VALUES, lapsing_quantile=0.95, churned_quantile=0.75)


def test_thresholds_round_trip_through_json_including_a_missing_cut():
    for th in (learn_thresholds(INTERVALS, VALUES), learn_thresholds(INTERVALS, VALUES[:3])):
        back = RuleThresholds.from_dict(json.loads(json.dumps(th.to_dict())))
        assert back.to_dict() == th.to_dict()


def test_states_at_the_edge_days_follow_the_stated_boundaries():
    th = _thresholds()  # lapsing 60, churned 120, new window 30
    rows = [
        _customer("prospect", 0, np.nan, np.nan, np.nan),
        _customer("new_at_window", 1, 30, 30, 50.0),
        _customer("one_order_past_window", 1, 31, 31, 50.0),
        _customer("two_orders_recent", 2, 5, 20, 50.0),
        _customer("at_lapsing", 4, 60, 400, 50.0),
        _customer("just_past_lapsing", 4, 60.5, 400, 50.0),
        _customer("at_churned", 4, 120, 400, 50.0),
        _customer("just_past_churned", 4, 121, 400, 50.0),
        _customer("one_order_long_ago", 1, 500, 500, 50.0),
    ]
    states = assign_states(pd.DataFrame(rows), th)
    assert dict(zip(states["customer_id"], states["lifecycle_state"], strict=True)) == {
        "prospect": "prospect",
        "new_at_window": "new",
        "one_order_past_window": "active",
        "two_orders_recent": "active",
        "at_lapsing": "active",
        "just_past_lapsing": "lapsing",
        "at_churned": "lapsing",
        "just_past_churned": "churned",
        "one_order_long_ago": "churned",
    }


def test_aov_tier_is_high_at_or_above_the_cut_and_none_without_orders():
    th = _thresholds(aov_high_cut=100.0)
    rows = [
        _customer("above", 2, 5, 50, 150.0),
        _customer("at", 2, 5, 50, 100.0),
        _customer("below", 2, 5, 50, 99.99),
        _customer("no_orders", 0, np.nan, np.nan, np.nan),
    ]
    states = assign_states(pd.DataFrame(rows), th)
    assert states["aov_tier"].tolist() == ["high", "high", "low", "none"]


def test_category_family_passes_through_and_defaults_to_unknown():
    th = _thresholds()
    rows = pd.DataFrame([
        _customer(1, 2, 5, 50, 10.0, "shoes"),
        _customer(2, 0, np.nan, np.nan, np.nan, None),
    ])
    assert assign_states(rows, th)["category_family"].tolist() == ["shoes", "unknown"]
    no_col = rows.drop(columns="top_category")
    assert assign_states(no_col, th)["category_family"].tolist() == ["unknown", "unknown"]


def test_states_keep_the_inputs_used_for_traceability():
    th = _thresholds()
    states = assign_states(pd.DataFrame([_customer(9, 3, 70, 300, 42.0)]), th)
    row = states.iloc[0]
    assert (row.days_since_last_order, row.orders_lifetime, row.aov_lifetime) == (70, 3, 42.0)
    assert row.lifecycle_state == "lapsing"


def test_missing_input_column_is_an_error_naming_it():
    with pytest.raises(ValueError, match="aov_lifetime"):
        assign_states(pd.DataFrame([_customer(1, 1, 1, 1, 1.0)]).drop(columns="aov_lifetime"),
                      _thresholds())


def test_state_counts_list_every_state_including_empty_ones():
    th = _thresholds()
    rows = pd.DataFrame([_customer(1, 0, np.nan, np.nan, np.nan),
                         _customer(2, 3, 200, 400, 500.0),
                         _customer(3, 3, 210, 400, 5.0)])
    counts = state_counts(assign_states(rows, th))
    assert counts["lifecycle_state"] == dict.fromkeys(LIFECYCLE_STATES, 0) | {
        "prospect": 1, "churned": 2}
    assert counts["aov_tier"] == {"high": 1, "low": 1, "none": 1}
