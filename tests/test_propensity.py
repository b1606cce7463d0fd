import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dagster_project.lib.features import FEATURE_COLUMNS, FEATURES
from dagster_project.lib.propensity import (
    LGBMParams,
    TrainConfig,
    auc_difference,
    contributions,
    explain_mask,
    load_model,
    prepare,
    save_model,
    score,
    top_decile_lift,
    top_drivers,
    train_target,
)

FEATURE_COLS = [
    "days_since_last_order",
    "orders_lifetime",
    "sessions_30d",
    "product_views_30d",
    "discount_order_share",
    "revenue_90d",
    "overdue_ratio",
    "customer_age_days",
]
TARGET = "purchase_30d"
FIRST_CUTOFF = dt.date(2025, 1, 6)
CONFIG = TrainConfig(
    lgbm=LGBMParams(n_estimators=300, learning_rate=0.1, min_child_samples=50),
    early_stopping_rounds=20,
    seed=11,
)


def make_frame(n_customers=3000, n_cutoffs=6, seed=0, intercept=-1.0):
    """Weekly cutoffs; the label depends on sessions and product views (and a little on
    recency) plus noise, so a model can beat the recency baseline."""
    rng = np.random.default_rng(seed)
    parts = []
    trait = rng.normal(size=n_customers)  # a latent buying intent that persists over time
    for k in range(n_cutoffs):
        n = n_customers
        sessions = rng.poisson(np.exp(0.8 * trait))
        views = rng.poisson(1 + sessions)
        dsl = rng.exponential(60, size=n)
        dsl[rng.random(n) < 0.1] = np.nan  # never ordered
        logit = intercept + 0.6 * sessions + 0.15 * views - 0.004 * np.nan_to_num(dsl, nan=365)
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        parts.append(
            pd.DataFrame(
                {
                    "cutoff_date": FIRST_CUTOFF + dt.timedelta(weeks=k),
                    "customer_id": [f"c{i:05d}" for i in range(n)],
                    "days_since_last_order": dsl,
                    "orders_lifetime": rng.poisson(2, size=n).astype(float),
                    "sessions_30d": sessions.astype(float),
                    "product_views_30d": views.astype(float),
                    "discount_order_share": rng.random(n),
                    "revenue_90d": rng.gamma(2, 50, size=n),
                    "overdue_ratio": rng.gamma(1, 1, size=n),
                    "customer_age_days": rng.integers(30, 900, size=n).astype(float),
                    TARGET: y,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def frame():
    return make_frame()


@pytest.fixture(scope="module")
def result(frame):
    return train_target(frame, TARGET, FEATURE_COLS, CONFIG)


@pytest.fixture(scope="module")
def latest(frame):
    return frame.loc[frame["cutoff_date"] == frame["cutoff_date"].max()].reset_index(drop=True)


def test_test_features_are_real_feature_columns():
    assert set(FEATURE_COLS) <= set(FEATURE_COLUMNS)


def test_validation_is_the_latest_labelled_cutoff_and_training_is_strictly_earlier(frame):
    # The last cutoff's window is not complete yet: its labels are NaN, so the validation
    # fold must move to the cutoff before it.
    f = frame.copy()
    last = f["cutoff_date"].max()
    f.loc[f["cutoff_date"] == last, TARGET] = np.nan
    folds = prepare(f, TARGET)
    valid = folds.loc[folds["fold"].isin(["early_stop", "calibration"])]
    train = folds.loc[folds["fold"] == "train"]
    expected_valid = pd.Timestamp(last - dt.timedelta(weeks=1))
    assert (valid["cutoff_date"] == expected_valid).all()
    assert (train["cutoff_date"] < expected_valid).all()
    assert train["cutoff_date"].nunique() == 4
    # both halves of the validation fold are used and disjoint by customer
    es = set(valid.loc[valid["fold"] == "early_stop", "customer_id"])
    cal = set(valid.loc[valid["fold"] == "calibration", "customer_id"])
    assert es and cal and not es & cal and len(es | cal) == len(valid)
    # validation customers are never trained on (label windows of late training cutoffs
    # overlap the validation window), and about half the customers validate
    assert not set(train["customer_id"]) & (es | cal)
    n = f["customer_id"].nunique()
    assert 0.4 * n < len(es | cal) < 0.6 * n
    # every labelled row is in exactly one fold; the rest are marked unused, not dropped
    assert len(folds) == f[TARGET].notna().sum()
    assert set(folds["fold"]) == {"train", "early_stop", "calibration", "unused"}


def test_trained_result_records_its_windows_and_row_counts(result, frame):
    assert result.absent_reason is None
    cutoffs = sorted(frame["cutoff_date"].unique())
    assert result.valid_cutoff == cutoffs[-1].isoformat()
    assert result.train_cutoffs == tuple(c.isoformat() for c in cutoffs[:-1])
    assert result.train_window == (cutoffs[0].isoformat(), cutoffs[-2].isoformat())
    n_valid = result.n_rows["early_stop"] + result.n_rows["calibration"]
    assert result.n_rows["train"] == 5 * (3000 - n_valid)  # the other customers, 5 cutoffs
    assert 0.4 * 3000 < n_valid < 0.6 * 3000
    assert result.label_overlap_days == 30 - 7
    assert 1 <= result.best_iteration < CONFIG.lgbm.n_estimators


def test_model_beats_its_recency_baseline_where_signal_exists(result):
    m, b = result.metrics, result.baseline_metrics
    assert result.baseline["feature"] == "days_since_last_order"
    assert m["roc_auc"] > 0.75
    assert m["roc_auc"] > b["roc_auc"] + 0.05
    assert result.beats_baseline is True
    assert m["top_decile_lift"] > 1.2
    assert m["n_pos"] > 0 and m["n_neg"] > 0
    assert m["n_pos"] + m["n_neg"] == result.n_rows["calibration"]
    assert set(b) >= {"roc_auc", "pr_auc", "brier", "top_decile_lift", "n_pos", "n_neg"}


def test_model_that_cannot_beat_its_baseline_is_flagged(frame):
    # The label is a function of recency only: the recency baseline is the ideal ranking,
    # so the model cannot beat it and the flag must say so.
    f = frame.copy()
    dsl = f["days_since_last_order"].fillna(10_000)
    f[TARGET] = (dsl < dsl.groupby(f["cutoff_date"]).transform("median")).astype(float)
    r = train_target(f, TARGET, FEATURE_COLS, CONFIG)
    assert r.baseline_metrics["roc_auc"] == pytest.approx(1.0)
    assert r.beats_baseline is False
    assert r.baseline_comparison["verdict"] in ("worse", "indistinguishable")


def test_model_vs_baseline_difference_carries_a_paired_bootstrap_interval(result):
    c = result.baseline_comparison
    assert c["auc_difference"] == pytest.approx(
        result.metrics["roc_auc"] - result.baseline_metrics["roc_auc"])
    assert c["ci_low"] < c["auc_difference"] < c["ci_high"]
    assert c["verdict"] == "better" and c["ci_low"] > 0 and c["n_boot"] == 200


def test_auc_difference_verdicts_follow_the_interval_not_the_point_estimate():
    rng = np.random.default_rng(3)
    y = (rng.random(4000) < 0.3).astype(float)
    signal = y + rng.normal(0, 1.0, y.size)
    noise_a, noise_b = rng.normal(size=y.size), rng.normal(size=y.size)
    assert auc_difference(y, signal, noise_a)["verdict"] == "better"
    assert auc_difference(y, noise_a, signal)["verdict"] == "worse"
    tie = auc_difference(y, signal + 0.01 * noise_a, signal + 0.01 * noise_b)
    assert tie["verdict"] == "indistinguishable" and tie["ci_low"] < 0 < tie["ci_high"]
    # seeded: the same inputs give the same interval
    assert auc_difference(y, signal, noise_a, seed=5) == auc_difference(y, signal, noise_a, seed=5)


def test_the_bootstrap_interval_is_the_one_roc_auc_score_gives_on_each_resample():
    # the fast weighted count must give, resample for resample, sklearn's AUC (ties included)
    rng = np.random.default_rng(8)
    y = (rng.random(600) < 0.25).astype(float)
    model = np.round(y + rng.normal(0, 1.0, y.size), 1)  # rounded: many ties
    base = np.round(rng.normal(size=y.size) + 0.3 * y, 0)
    draws = np.random.default_rng(2)
    boots = []
    for _ in range(50):
        idx = draws.integers(0, y.size, y.size)
        boots.append(roc_auc_score(y[idx], model[idx]) - roc_auc_score(y[idx], base[idx]))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    c = auc_difference(y, model, base, n_boot=50, seed=2)
    assert c["n_boot"] == 50
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_target_with_too_few_positives_is_absent_with_a_reason_and_no_model(frame):
    f = frame.copy()
    f[TARGET] = 0.0
    # fewer positives in all than the training fold alone needs
    f.loc[f.sample(CONFIG.min_positives - 10, random_state=0).index, TARGET] = 1.0
    r = train_target(f, TARGET, FEATURE_COLS, CONFIG)
    assert r.booster is None and not r.trained
    assert "positives" in r.absent_reason and f"at least {CONFIG.min_positives}" in r.absent_reason
    with pytest.raises(ValueError, match="no model"):
        score(r, f)


def test_target_with_a_single_labelled_cutoff_is_absent(frame):
    f = frame.loc[frame["cutoff_date"] == frame["cutoff_date"].max()]
    r = train_target(f, TARGET, FEATURE_COLS, CONFIG)
    assert r.booster is None and "one labelled cutoff" in r.absent_reason


def test_duplicate_customer_rows_at_a_cutoff_are_an_error(frame):
    with pytest.raises(ValueError, match="duplicate"):
        prepare(pd.concat([frame, frame.head(1)]), TARGET)


def test_labels_other_than_zero_one_are_an_error(frame):
    f = frame.copy()
    f.loc[0, TARGET] = 2.0
    with pytest.raises(ValueError, match="0/1"):
        prepare(f, TARGET)


def test_training_is_reproducible_byte_for_byte_and_under_row_shuffle(result, frame, latest):
    again = train_target(frame, TARGET, FEATURE_COLS, CONFIG)
    shuffled = train_target(
        frame.sample(frac=1.0, random_state=3), TARGET, FEATURE_COLS, CONFIG
    )
    text = result.booster.model_to_string()
    assert again.booster.model_to_string() == text
    assert shuffled.booster.model_to_string() == text
    expected = score(result, latest)
    pd.testing.assert_frame_equal(score(again, latest), expected, check_exact=True)
    pd.testing.assert_frame_equal(score(shuffled, latest), expected, check_exact=True)
    assert shuffled.data_fingerprint == result.data_fingerprint
    assert shuffled.metrics == result.metrics


def test_a_different_seed_gives_a_different_model(result, frame):
    other = train_target(frame, TARGET, FEATURE_COLS, TrainConfig(
        lgbm=CONFIG.lgbm, early_stopping_rounds=CONFIG.early_stopping_rounds, seed=12))
    assert other.booster.model_to_string() != result.booster.model_to_string()


def test_saved_model_rescored_after_loading_gives_identical_scores(result, latest, tmp_path):
    save_model(result, tmp_path / "purchase_30d")
    assert {p.name for p in (tmp_path / "purchase_30d").iterdir()} == {
        "model.txt", "calibration.json", "metadata.json"}
    loaded = load_model(tmp_path / "purchase_30d")
    pd.testing.assert_frame_equal(score(loaded, latest), score(result, latest), check_exact=True)
    pd.testing.assert_frame_equal(top_drivers(loaded, latest), top_drivers(result, latest))
    assert loaded.metrics == result.metrics
    assert loaded.feature_cols == result.feature_cols
    assert loaded.train_window == result.train_window
    assert loaded.data_fingerprint == result.data_fingerprint


def test_absent_result_saves_its_reason_and_loads_as_absent(frame, tmp_path):
    r = train_target(frame.assign(**{TARGET: 0.0}), TARGET, FEATURE_COLS, CONFIG)
    save_model(r, tmp_path / "m")
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["metadata.json"]
    loaded = load_model(tmp_path / "m")
    assert loaded.absent_reason == r.absent_reason and loaded.booster is None


def test_contributions_plus_bias_sum_to_the_raw_score(result, latest):
    c = contributions(result, latest)
    assert list(c.columns) == [*FEATURE_COLS, "bias"]
    np.testing.assert_allclose(
        c.sum(axis=1).to_numpy(), score(result, latest)["raw_score"].to_numpy(), atol=1e-6
    )


def test_top_drivers_are_real_features_ordered_by_absolute_contribution(result, latest):
    d = top_drivers(result, latest, k=3)
    c = contributions(result, latest).drop(columns="bias")
    assert len(d) == len(latest)
    assert set(d["driver_1"].dropna()) <= set(FEATURE_COLS)
    abs_top = np.abs(d[[f"driver_{j}_contribution" for j in (1, 2, 3)]].to_numpy())
    assert (np.diff(abs_top, axis=1) <= 0).all()
    np.testing.assert_array_equal(abs_top[:, 0], np.abs(c.to_numpy()).max(axis=1))
    # the named feature's contribution is the one reported
    picked = c.to_numpy()[np.arange(len(d)), [FEATURE_COLS.index(f) for f in d["driver_1"]]]
    np.testing.assert_array_equal(picked, d["driver_1_contribution"].to_numpy())
    # the phrase carries the marketer text and the sign
    row = d.iloc[0]
    arrow = "↑" if row.driver_1_contribution >= 0 else "↓"
    assert row.driver_1_text == f"{FEATURES[row.driver_1]} {arrow}"
    # the strongest signal in the data is the strongest driver most often
    assert d["driver_1"].value_counts().index[0] in {"sessions_30d", "product_views_30d"}


def test_calibrated_scores_are_probabilities_and_improve_on_the_raw_sigmoid(result, frame):
    folds = prepare(frame, TARGET)
    cal = folds.loc[folds["fold"] == "calibration"]
    s = score(result, cal)
    y = cal[TARGET].to_numpy()
    assert s["score"].between(0, 1).all()
    brier_cal = np.mean((s["score"].to_numpy() - y) ** 2)
    brier_raw = np.mean((1 / (1 + np.exp(-s["raw_score"].to_numpy())) - y) ** 2)
    assert brier_cal <= brier_raw
    # the reported (cross-fitted) Brier score is an honest probability error
    assert 0 < result.metrics["brier"] < y.mean() * (1 - y.mean())
    assert result.metrics["brier_uncalibrated"] == pytest.approx(brier_raw)


def _same_ranking(raw: np.ndarray, prob: np.ndarray) -> None:
    """``prob`` orders the rows exactly as ``raw`` does: ties only where raw ties."""
    order = np.argsort(raw, kind="stable")
    d_raw, d_prob = np.diff(raw[order]), np.diff(prob[order])
    assert (d_prob[d_raw > 0] > 0).all()  # no new ties, no inversions
    assert (d_prob[d_raw == 0] == 0).all()
    assert np.unique(prob).size == np.unique(raw).size


def test_calibrated_scores_rank_exactly_as_the_log_odds(result, latest):
    s = score(result, latest)
    raw, prob = s["raw_score"].to_numpy(), s["score"].to_numpy()
    assert ((prob >= 0) & (prob <= 1)).all()
    _same_ranking(raw, prob)
    # beyond the fitted range too (the flat ends of an isotonic fit), and with log-odds
    # far outside anything a booster gives
    lo, hi = result.calibrator.x_thresholds[0], result.calibrator.x_thresholds[-1]
    extra = np.concatenate([np.linspace(lo - 30, lo, 500), np.linspace(hi, hi + 30, 500),
                            np.linspace(lo, hi, 2000), [-1e3, 1e3], raw[:50]])
    p = result.calibrator.predict(extra)
    assert ((p >= 0) & (p <= 1)).all()
    _same_ranking(extra, p)


def test_the_calibration_is_the_isotonic_fit_moved_by_at_most_the_tie_break():
    from sklearn.isotonic import IsotonicRegression

    from dagster_project.lib.propensity import TIE_BREAK, IsotonicCalibrator

    rng = np.random.default_rng(5)
    raw = np.round(rng.normal(-1, 1.5, 4000), 2)  # rounded: many tied raw scores
    y = (rng.random(raw.size) < 1 / (1 + np.exp(-(raw + 0.3 * raw**2)))).astype(float)
    cal = IsotonicCalibrator.fit(raw, y)
    p = cal.predict(raw)
    _same_ranking(raw, p)
    # mean label preserved per block, as the isotonic fit's (up to the tie-break)
    iso = IsotonicRegression(out_of_bounds="clip").fit(raw, y).predict(raw)
    assert abs(p.mean() - y.mean()) < 0.01
    at_centres = cal.predict(np.asarray(cal.x_thresholds))
    np.testing.assert_allclose(at_centres, cal.y_thresholds, atol=TIE_BREAK)
    assert np.mean((p - y) ** 2) <= np.mean((iso - y) ** 2) + 0.002
    # JSON round trip is exact; a former step-function file still reads as fitted
    assert IsotonicCalibrator.from_dict(cal.to_dict()) == cal
    old = IsotonicCalibrator.from_dict(
        {"method": "isotonic", "x_thresholds": [0.0, 1.0], "y_thresholds": [0.2, 0.6]})
    np.testing.assert_array_equal(old.predict(np.array([-1.0, 0.5, 2.0])), [0.2, 0.4, 0.6])


def test_training_rows_above_the_cap_are_sampled_evenly_per_cutoff(frame):
    cfg = TrainConfig(lgbm=CONFIG.lgbm, early_stopping_rounds=20, seed=11, max_train_rows=6000)
    r = train_target(frame, TARGET, FEATURE_COLS, cfg)
    assert r.n_rows["train"] == 6000
    assert len(r.train_cutoffs) == 5  # every cutoff kept its share
    assert r.trained


def test_top_decile_lift_counts_ties_at_the_boundary_fairly():
    y = np.array([1, 0] * 10, dtype=float)
    flat = np.zeros(20)
    assert top_decile_lift(y, flat) == pytest.approx(1.0)
    assert top_decile_lift(y, np.where(y == 1, 1.0, 0.0)) == pytest.approx(2.0)


def test_drivers_do_not_depend_on_the_prediction_thread_count(result, latest):
    pd.testing.assert_frame_equal(top_drivers(result, latest, num_threads=2),
                                  top_drivers(result, latest, num_threads=1), check_exact=True)


def test_explain_mask_covers_everyone_up_to_the_cap_then_the_highest_scores():
    scores = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    assert explain_mask(scores, None).all() and explain_mask(scores, 5).all()
    # above the cap: the highest scores; of two tied at 0.9 both fit, of the 0.5/0.2 the 0.5
    np.testing.assert_array_equal(explain_mask(scores, 3), [False, True, True, True, False])
    # a tie at the boundary goes to the earlier row (rows are sorted by customer_id)
    np.testing.assert_array_equal(explain_mask(scores, 1), [False, True, False, False, False])
    assert explain_mask(scores, 0).sum() == 0


def test_the_refit_on_all_customers_scores_and_the_validated_model_is_measured(
        result, frame, latest, tmp_path):
    import dataclasses

    r = train_target(frame, TARGET, FEATURE_COLS, dataclasses.replace(CONFIG, refit_all=True))
    # the validated model and every metric are those of the plain run
    assert r.validated_booster.model_to_string() == result.booster.model_to_string()
    assert r.metrics == result.metrics and r.best_iteration == result.best_iteration
    # the refit: every customer's rows at every cutoff, as many trees
    folds = prepare(frame, TARGET)
    assert r.refit == {"n_rows": len(folds), "trees": result.best_iteration,
                       "cutoffs": folds["cutoff_date"].nunique()}
    assert r.booster.num_trees() == result.booster.num_trees()
    assert r.booster.model_to_string() != result.booster.model_to_string()
    pd.testing.assert_frame_equal(score(r, latest, validated=True), score(result, latest),
                                  check_exact=True)
    s = score(r, latest)
    assert not np.array_equal(s["raw_score"], score(result, latest)["raw_score"])
    assert s["score"].between(0, 1).all()
    # deterministic, and both models saved and loaded bit-identically
    again = train_target(frame, TARGET, FEATURE_COLS, dataclasses.replace(CONFIG, refit_all=True))
    assert again.booster.model_to_string() == r.booster.model_to_string()
    save_model(r, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(score(loaded, latest), s, check_exact=True)
    pd.testing.assert_frame_equal(score(loaded, latest, validated=True),
                                  score(result, latest), check_exact=True)
