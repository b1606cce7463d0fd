"""BG/NBD as the models' starting point (lib/btyd.py add_features, lib/propensity.py Offset):
fitted per date on that date's features only, and the purchase and churn models boosting
from its log-odds score, explain, save and load consistently."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.defs.propensity.assets import with_bgnbd_features
from dagster_project.lib import btyd
from dagster_project.lib import propensity as pm
from dagster_project.lib.features import BGNBD_FEATURES, MODEL_FEATURE_COLUMNS

from .test_btyd import _simulate

D1, D2 = dt.date(2025, 3, 3), dt.date(2025, 3, 10)


def _features(x, t_x, T, date, prefix="c"):
    n = len(x)
    return pd.DataFrame({
        "as_of_date": date, "customer_id": [f"{prefix}{i:05d}" for i in range(n)],
        "orders_lifetime": x + 1, "recency_span_days": t_x, "days_since_first_order": T})


@pytest.fixture()
def warehouse():
    x, t_x, T, future, _ = _simulate(6000, 720, 30, seed=5)
    rows = _features(x, np.round(t_x), np.round(T), D1)
    x2, t2, T2, _, _ = _simulate(3000, 360, 30, seed=6)
    rows = pd.concat([rows, _features(x2, np.round(t2), np.round(T2), D2)], ignore_index=True)
    # a customer without an order at D1
    rows.loc[len(rows)] = [D1, "nobody", 0, np.nan, np.nan]
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.customer_features as select * from rows")
    yield con, rows, future
    con.close()


def test_each_date_is_fitted_on_that_dates_customers_only(warehouse):
    con, rows, _ = warehouse
    at = btyd.params_at(con, [D1, D2])
    d1 = rows[rows["as_of_date"] == D1]
    assert at[D1] == btyd.fit(*btyd.from_features(d1))
    assert at[D1].n_customers == len(d1) - 1  # the customer without an order is outside
    # rows of another date change nothing at D1
    con.execute("delete from marts.customer_features where as_of_date = ?", [D2])
    assert btyd.params_at(con, [D1])[D1] == at[D1]
    # a date with nothing to fit has no parameters (its rows get NaN features)
    assert btyd.params_at(con, [dt.date(2020, 1, 1)]) == {}


def test_the_fit_reads_at_most_max_customers_per_date(warehouse):
    con, rows, _ = warehouse
    small = btyd.params_at(con, [D1], max_customers=1000)[D1]
    assert 900 < small.n_customers <= 1100


def test_the_features_are_bg_nbd_probabilities_of_each_rows_own_date(warehouse):
    con, rows, future = warehouse
    frame = rows.rename(columns={"as_of_date": "cutoff_date"})
    out = with_bgnbd_features(con, frame)
    assert list(out.columns) == [*frame.columns, *BGNBD_FEATURES]
    at = btyd.params_at(con, [D1, D2])
    for d in (D1, D2):
        part = out[out["cutoff_date"] == d]
        x, t_x, T = btyd.from_features(part)
        np.testing.assert_array_equal(part["bgnbd_p_alive"], btyd.p_alive(at[d], x, t_x, T))
        np.testing.assert_array_equal(part["bgnbd_p_purchase_30d"],
                                      btyd.p_purchase(at[d], x, t_x, T, 30))
    nobody = out[out["customer_id"] == "nobody"]
    assert nobody[list(BGNBD_FEATURES)].isna().all(axis=None)
    # P(purchase) grows with the horizon and is bounded by P(alive)
    p = out.dropna(subset=["bgnbd_p_alive"])
    assert (p["bgnbd_p_purchase_7d"] <= p["bgnbd_p_purchase_30d"]).all()
    assert (p["bgnbd_p_purchase_90d"] <= p["bgnbd_p_alive"] + 1e-12).all()


def _training_frame(n_cutoffs=6, n=2500, seed=0):
    """A purchase_30d frame whose label follows BG/NBD's own simulation plus a web signal
    BG/NBD cannot see."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(n_cutoffs):
        x, t_x, T, future, _ = _simulate(n, 720, 30, seed=100 + k)
        sessions = rng.poisson(1.0, n).astype(float)
        y = (future | (rng.random(n) < 0.08 * sessions)).astype(float)
        f = _features(x, t_x, T, dt.date(2025, 1, 6) + dt.timedelta(weeks=k))
        f["orders_lifetime"] = np.where(rng.random(n) < 0.05, 0, f["orders_lifetime"])
        parts.append(f.rename(columns={"as_of_date": "cutoff_date"}).assign(
            sessions_30d=sessions, purchase_30d=y))
    frame = pd.concat(parts, ignore_index=True)
    for c in MODEL_FEATURE_COLUMNS:
        if c not in frame:
            frame[c] = np.nan
    params = {d: btyd.fit(*btyd.from_features(g)) for d, g in frame.groupby("cutoff_date")}
    return btyd.add_features(frame, params, "cutoff_date")


@pytest.fixture(scope="module")
def trained():
    frame = _training_frame()
    cfg = pm.TrainConfig(lgbm=pm.LGBMParams(n_estimators=200, min_child_samples=50),
                         early_stopping_rounds=20, seed=3, refit_all=True)
    return frame, pm.train_target(frame, "purchase_30d", MODEL_FEATURE_COLUMNS, cfg), cfg


def test_the_purchase_model_boosts_from_bg_nbd_log_odds(trained):
    frame, r, _ = trained
    assert r.trained, r.absent_reason
    assert r.offset["feature"] == "bgnbd_p_purchase_30d" and r.offset["sign"] == 1
    latest = frame[frame["cutoff_date"] == frame["cutoff_date"].max()]
    trees = r.booster.predict(pm._matrix(latest, r.feature_cols), raw_score=True)
    p = latest["bgnbd_p_purchase_30d"].to_numpy()
    q = np.clip(p, 1e-4, 1 - 1e-4)
    prior = np.where(np.isnan(p), r.offset["missing"], np.log(q / (1 - q)))
    np.testing.assert_allclose(pm.score(r, latest)["raw_score"], trees + prior, rtol=0,
                               atol=1e-9)
    # without an order BG/NBD says nothing: those rows start from their training base rate
    none = frame["bgnbd_p_purchase_30d"].isna() & (frame["cutoff_date"] < frame["cutoff_date"].max())
    rate = frame.loc[none, "purchase_30d"].mean()
    assert 0 < rate < 1 and r.offset["missing"] == pytest.approx(np.log(rate / (1 - rate)),
                                                                 abs=0.5)


def test_the_offset_model_ranks_at_least_as_well_as_bg_nbd_and_adds_what_it_cannot_see(trained):
    _, r, _ = trained
    c = r.btyd["comparison"]
    print(pm.describe_comparison(c), r.metrics["roc_auc"], r.btyd["metrics"]["roc_auc"])
    assert c["ci_low"] > 0  # the web signal is beyond BG/NBD: the model is ahead beyond noise


def test_contributions_of_an_offset_model_sum_to_its_raw_score(trained):
    frame, r, _ = trained
    latest = frame[frame["cutoff_date"] == frame["cutoff_date"].max()]
    c = pm.contributions(r, latest)
    np.testing.assert_allclose(c.sum(axis=1), pm.score(r, latest)["raw_score"], atol=1e-6)
    d = pm.top_drivers(r, latest, k=2)
    assert "bgnbd_p_purchase_30d" in set(d["driver_1"])
    assert d.loc[d["driver_1"] == "bgnbd_p_purchase_30d", "driver_1_text"].str.startswith(
        "expected to buy within 30 days (BG/NBD)").all()


def test_an_offset_model_saved_and_loaded_scores_identically(trained, tmp_path):
    frame, r, _ = trained
    latest = frame[frame["cutoff_date"] == frame["cutoff_date"].max()]
    pm.save_model(r, tmp_path / "m")
    loaded = pm.load_model(tmp_path / "m")
    assert loaded.offset == r.offset
    pd.testing.assert_frame_equal(pm.score(loaded, latest), pm.score(r, latest),
                                  check_exact=True)
    pd.testing.assert_frame_equal(pm.score(loaded, latest, validated=True),
                                  pm.score(r, latest, validated=True), check_exact=True)


def test_without_the_bg_nbd_feature_or_with_the_offset_off_the_trees_start_from_zero(trained):
    frame, _, cfg = trained
    cols = [c for c in MODEL_FEATURE_COLUMNS if c != "bgnbd_p_purchase_30d"]
    assert pm.train_target(frame, "purchase_30d", cols, cfg).offset is None
    import dataclasses
    off = pm.train_target(frame, "purchase_30d", MODEL_FEATURE_COLUMNS,
                          dataclasses.replace(cfg, offset=False))
    assert off.offset is None
    assert pm.train_target(frame.assign(repeat_90d=frame["purchase_30d"]), "repeat_90d",
                           MODEL_FEATURE_COLUMNS, cfg).offset is None
