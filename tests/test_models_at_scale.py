"""Issue 3's model-quality bars where a validation fold can resolve them: 50,000 generated
customers over two years (seed 42), the real ingest, dbt build and propensity asset (the
suite's longest module: on 2 quiet cores, generating took 61 s and ingest and dbt 178 s).

On the 3,000-customer fixture a validation half holds 200 to 700 customers, and the 95%
interval of an AUC difference there is about +-0.05 to +-0.1: wider than what separates a
model from its baseline for the thin targets (repeat_90d, discount_next_order). Here the
halves hold 2,400 to 12,200 customers. The verdict asserted is the pipeline's own
(lib/propensity.auc_difference: a paired bootstrap interval of model minus baseline ROC
AUC, "better" when it lies above 0).

Two years, as the synthetic default: with one year of history (100,000 customers to the
same date) purchase_30d was 0.068 AUC from the planted truth, with two 0.045; every
training cutoff then also has a full year of history behind its 365-day windows."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dagster_project.defs.propensity.assets import PropensityConfig, read_training_frame
from dagster_project.lib import propensity as pm
from dagster_project.lib.features import LABELS

from .helpers import build_warehouse, load_script, make_dataset, query

CUSTOMERS = 50_000
AS_OF = dt.date(2025, 6, 30)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def at_scale(tmp_path_factory):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from dagster_project.defs.propensity.assets import propensity_models
    from dagster_project.defs.resources import DataPaths

    root = tmp_path_factory.mktemp("scale")
    make_dataset(root, customers=CUSTOMERS, seed=42, start=AS_OF - dt.timedelta(days=729),
                 end=AS_OF, truth_weeks=20)
    db = root / "warehouse.duckdb"
    build_warehouse(root / "raw", db, AS_OF, select="+customer_features +customer_labels")
    result = dg.materialize(
        [propensity_models], partition_key=AS_OF.isoformat(),
        resources={"duckdb": DuckDBResource(database=str(db)),
                   "paths": DataPaths(data_dir=str(root))},
        # Drivers are not what this module checks, and cost 1-2 ms per customer and target.
        # Nor is the refit on every customer (PropensityConfig.refit_all, about half of the
        # training time here): every metric and verdict is the validated model's, trained
        # before any refit, and the tests below score with that model (validated=True).
        run_config={"ops": {"propensity_models": {"config": {
            "max_explained_customers": 500, "refit_all": False}}}})
    assert result.success
    return {"root": root, "db": db}


def _metadata(at_scale, target: str) -> dict:
    path = at_scale["root"] / "models" / target / AS_OF.isoformat() / "metadata.json"
    return json.loads(path.read_text())


def _calibration_half(at_scale, target: str) -> pd.DataFrame:
    """The validation customers the asset reports ``target``'s metrics on: its training frame
    read as the asset reads it (default config), then the calibration half of the fold."""
    import duckdb

    con = duckdb.connect(str(at_scale["db"]), read_only=True)
    try:
        frame = read_training_frame(con, target, AS_OF, PropensityConfig())
    finally:
        con.close()
    valid = pm.prepare(frame, target)
    return valid[valid["fold"] == "calibration"]


def _comparisons(at_scale) -> dict[str, dict]:
    metrics = query(at_scale["db"], "select * from segmentation.model_metrics "
                    "where as_of_date = ?", [AS_OF]).set_index("target")
    assert set(metrics.index) == set(LABELS)
    assert (metrics["status"] == "trained").all(), metrics["absent_reason"].to_dict()
    assert bool(metrics["beats_baseline"].all())  # every point estimate is above its baseline
    out = {}
    for target in LABELS:
        meta = _metadata(at_scale, target)
        c = meta["baseline_comparison"]
        print(f"{target:20s} model {meta['metrics']['roc_auc']:.3f} baseline "
              f"{meta['baseline_metrics']['roc_auc']:.3f} difference {c['auc_difference']:+.3f} "
              f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] on {meta['n_rows']['calibration']:,} "
              f"customers: {c['verdict']}")
        assert meta["n_rows"]["calibration"] > 2000, target
        out[target] = c
    return out


def test_every_model_but_discount_beats_its_naive_baseline_beyond_noise(at_scale):
    verdicts = {t: c["verdict"] for t, c in _comparisons(at_scale).items()}
    del verdicts["discount_next_order"]  # the next two tests
    assert verdicts == {t: "better" for t in verdicts}


@pytest.mark.xfail(strict=True, reason="within noise of the past discount share: +0.005 "
                   "[-0.013, +0.026]; the exact posterior of the planted trait is just beyond it "
                   "(+0.015 [+0.000, +0.029]) and the model within 0.01 of that posterior (next "
                   "test); strict, so it turns red if it passes")
def test_discount_model_beats_its_naive_baseline_beyond_noise(at_scale):
    assert _comparisons(at_scale)["discount_next_order"]["verdict"] == "better"


def test_discount_model_reaches_the_bayesian_observer(at_scale):
    """In the generator a customer's discount sensitivity shows only in their orders. The
    discount observer (scripts/model_ceiling.py, tested in test_model_ceiling.py) scores each
    validation customer with the exact posterior of that trait given their orders, knowing
    the population's trait distribution, the generator's discount probabilities and the
    promo calendar: no model of the order history can do better on average. The model must
    come within 0.01 AUC of it."""
    import duckdb

    mc = load_script("model_ceiling")
    target = "discount_next_order"
    valid = _calibration_half(at_scale, target)
    con = duckdb.connect(str(at_scale["db"]), read_only=True)
    try:
        observer = mc.observer_scores(con, valid, at_scale["root"] / "truth")
    finally:
        con.close()
    model = pm.load_model(at_scale["root"] / "models" / target / AS_OF.isoformat())
    y = valid[target].to_numpy()
    model_auc = roc_auc_score(y, pm.score(model, valid, validated=True)["raw_score"])
    observer_auc = roc_auc_score(y, observer)
    baseline = pm._baseline_score(valid, pm.BASELINES[target])
    c = pm.auc_difference(y, observer, baseline, seed=1)
    print(f"discount_next_order on {len(valid):,} customers: model {model_auc:.3f}, observer "
          f"{observer_auc:.3f}, baseline {roc_auc_score(y, baseline):.3f}; observer minus "
          f"baseline {c['auc_difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]")
    assert model_auc == pytest.approx(_metadata(at_scale, target)["metrics"]["roc_auc"])
    assert model_auc >= observer_auc - 0.01


def test_purchase_and_churn_models_beat_bg_nbd_beyond_noise(at_scale):
    """The classic buy-till-you-die reference (BG/NBD, fitted by the pipeline on the same
    training customers) is beaten beyond noise by the models with its kind of features."""
    for target in pm.BTYD_TARGETS:
        b = _metadata(at_scale, target)["btyd"]
        c = b["comparison"]
        print(f"{target:14s} model minus BG/NBD ({b['metrics']['roc_auc']:.3f}): "
              f"{c['auc_difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]")
        assert c["verdict"] == "better", target


@pytest.fixture(scope="module")
def purchase_30d_validation(at_scale) -> pd.DataFrame:
    """The saved purchase_30d model's calibration half, scored, with the generator's truth."""
    target = "purchase_30d"
    valid = _calibration_half(at_scale, target)
    model = pm.load_model(at_scale["root"] / "models" / target / AS_OF.isoformat())
    valid = valid.assign(score=pm.score(model, valid, validated=True)["raw_score"].to_numpy(),
                         cutoff_date=pd.to_datetime(valid["cutoff_date"]))
    truth = pd.read_parquet(at_scale["root"] / "truth" / "purchase_probability.parquet")
    truth["cutoff_date"] = pd.to_datetime(truth["cutoff_date"])
    merged = valid.merge(truth, on=["cutoff_date", "customer_id"], how="inner")
    assert len(merged) == len(valid) and len(merged) > 2000
    return merged


def test_purchase_30d_auc_is_within_005_of_the_observable_true_probability(
        purchase_30d_validation):
    """The issue's truth bar against the best probability the data could support: the
    generator's p_purchase_30d_observed knows every planted trait and sees every purchase and
    visit, with the hidden alive flag replaced by its posterior (synthetic AliveEvidence)."""
    v = purchase_30d_validation
    y = v["purchase_30d"]
    model_auc = roc_auc_score(y, v["score"])
    observable_auc = roc_auc_score(y, v["p_purchase_30d_observed"])
    truth_auc = roc_auc_score(y, v["p_purchase_30d"])
    print(f"purchase_30d on {len(v):,} validation customers: model {model_auc:.3f}, "
          f"observable truth {observable_auc:.3f}, planted truth {truth_auc:.3f}")
    assert abs(model_auc - observable_auc) <= 0.05
    assert observable_auc < truth_auc


def test_purchase_30d_auc_is_within_005_of_the_planted_true_probability(
        purchase_30d_validation):
    """The issue's bar as written: the planted probability also knows the dropout draws,
    which no data records (scripts/model_ceiling.py decomposes the distance)."""
    v = purchase_30d_validation
    y = v["purchase_30d"]
    model_auc, truth_auc = roc_auc_score(y, v["score"]), roc_auc_score(y, v["p_purchase_30d"])
    print(f"purchase_30d: model {model_auc:.3f}, planted truth {truth_auc:.3f}")
    assert abs(model_auc - truth_auc) <= 0.05
