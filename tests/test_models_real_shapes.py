"""The purchase and churn models against BG/NBD on shop exports shaped like real ones
(synthetic/shapes.py: one acquisition cohort in GBP, wholesale invoices ending 2011, purchase
dates only in USD), through the real ingest, dbt build and the asset's training path
(read_training_frame + train_target). About 60 s: three small warehouses, built once.

The warehouses have dbt's default feature grid: weekly for 18 weeks, then every 4 weeks up to
64 (macros/as_of.sql), a year of training cutoffs behind churn_90d's 13-week label window,
which the asset's grid (PropensityConfig: every 4 weeks across 52) needs; with 18 weekly dates
alone the models lost to BG/NBD on these shops (scripts/model_vs_btyd.py).

What is asserted, and how noise is decided: each shop's calibration half holds 300 to 800
customers; the paired bootstrap 95% interval of the AUC difference (model minus BG/NBD) is
+-0.005 to +-0.03 (narrow where the model, boosting from BG/NBD's log-odds, stays close to
it). The model must not be worse than BG/NBD beyond noise (the interval's upper end above
0). Issue 18's bar, 0.01 ahead where the interval's half-width is below 0.01 and ahead
beyond noise elsewhere, is a strict xfail: it does not hold on these shops. The top-decile lift must be at least BG/NBD's
minus the half-width of the paired bootstrap 95% interval of the lift difference."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pytest

from dagster_project.defs.propensity.assets import (
    PropensityConfig,
    read_training_frame,
    train_config,
)
from dagster_project.lib import btyd
from dagster_project.lib import propensity as pm
from dagster_project.lib.dbt_vars import dbt_state_dir, dbt_vars
from dagster_project.lib.features import MODEL_FEATURE_COLUMNS
from dagster_project.lib.ingest import ingest_partition
from dagster_project.synthetic import shapes

from .helpers import run_dbt

CURRENCY = {"cohort": "GBP", "wholesale": "GBP", "dates_only": "USD"}
TARGETS = ("purchase_30d", "churn_90d")


@pytest.fixture(scope="module", params=shapes.SHAPES)
def shop(request, tmp_path_factory):
    name = request.param
    root = tmp_path_factory.mktemp(name)
    shape = shapes.DEFAULTS[name]
    shapes.write(shape, root / "raw")
    db = root / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    try:
        ingest_partition(con, root / "raw", shape.end)
    finally:
        con.close()
    proc = run_dbt(["build", "--quiet", "--select", "+customer_features +customer_labels",
                    "--vars", dbt_vars(shape.end.isoformat(), reporting_currency=CURRENCY[name])],
                   DS_DUCKDB_PATH=str(db), DBT_TARGET_PATH=str(dbt_state_dir(db)))
    assert proc.returncode == 0, proc.stdout[-3000:]
    cfg = PropensityConfig()
    con = duckdb.connect(str(db), read_only=True)
    try:
        results = {}
        for target in TARGETS:
            frame = read_training_frame(con, target, shape.end, cfg)
            results[target] = (frame, pm.train_target(frame, target, MODEL_FEATURE_COLUMNS,
                                                      train_config(cfg)))
    finally:
        con.close()
    return name, results


def _lift_noise(frame, result, target, n_boot=200, seed=0) -> float:
    """Half-width of the paired bootstrap 95% interval of model minus BG/NBD top-decile lift
    on the calibration half."""
    folds = pm.prepare(frame, target)
    cal = folds[folds["fold"] == "calibration"]
    y = cal[target].to_numpy(dtype=float)
    m = pm.score(result, cal, validated=True)["raw_score"].to_numpy()
    assert pm.top_decile_lift(y, m) == pytest.approx(result.metrics["top_decile_lift"])
    train = folds[folds["fold"] == "train"]
    params = btyd.fit(*btyd.from_features(train[train["cutoff_date"] == train["cutoff_date"].max()]))
    horizon, sign = pm.BTYD_TARGETS[target]
    p = btyd.p_purchase(params, *btyd.from_features(cal), horizon)
    b = np.where(np.isnan(p), -1.0, p) if sign > 0 else np.where(np.isnan(p), 2.0, 1 - p)
    assert pm.top_decile_lift(y, b) == pytest.approx(result.btyd["metrics"]["top_decile_lift"])
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, y.size, y.size)
        if 0 < y[i].sum() < y.size:
            diffs.append(pm.top_decile_lift(y[i], m[i]) - pm.top_decile_lift(y[i], b[i]))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(hi - lo) / 2


def _report(name, r, target):
    c = r.btyd["comparison"]
    print(f"{name} {target}: model {r.metrics['roc_auc']:.3f} BG/NBD "
          f"{r.btyd['metrics']['roc_auc']:.3f} {pm.describe_comparison(c)} on "
          f"{r.n_rows['calibration']} customers, {len(r.train_cutoffs)} training cutoffs")
    return c


@pytest.mark.parametrize("target", TARGETS)
def test_the_model_is_not_beaten_by_bg_nbd_on_auc(shop, target):
    name, results = shop
    _, r = results[target]
    assert r.trained, r.absent_reason
    assert r.offset and r.offset["feature"] == pm.offset_feature(target)  # boosts from BG/NBD
    c = _report(name, r, target)
    assert len(r.train_cutoffs) >= 10  # the year-long grid is what these shops get
    assert c["ci_high"] > 0, "worse than BG/NBD beyond noise"


@pytest.mark.xfail(strict=True, reason=(
    "issue 18's bar, not met: on these shops the models are level with BG/NBD (backtest "
    "-0.001..+0.010 AUC), not 0.01 ahead; strict, so meeting it turns this red until the "
    "marker goes"))
@pytest.mark.parametrize("target", TARGETS)
def test_the_model_beats_bg_nbd_by_0_01_where_the_validation_set_resolves_it(shop, target):
    name, results = shop
    _, r = results[target]
    c = _report(name, r, target)
    if (c["ci_high"] - c["ci_low"]) / 2 < 0.01:  # resolved: the 0.01 margin must hold
        assert c["auc_difference"] >= 0.01
    else:
        assert c["ci_low"] > 0, "not ahead of BG/NBD beyond noise"


@pytest.mark.parametrize("target", TARGETS)
def test_the_top_decile_lift_matches_bg_nbd_within_noise(shop, target):
    name, results = shop
    frame, r = results[target]
    lift, ref = r.metrics["top_decile_lift"], r.btyd["metrics"]["top_decile_lift"]
    noise = _lift_noise(frame, r, target)
    print(f"{name} {target}: lift {lift:.2f} vs BG/NBD {ref:.2f} (noise +-{noise:.2f})")
    assert lift >= ref - noise
