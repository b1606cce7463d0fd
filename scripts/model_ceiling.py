"""How far could any model go? The ceilings behind issue 3's two open bars.

    python scripts/model_ceiling.py --db data/warehouse.duckdb --date 2026-11-25 \
        --truth data/truth

Writes two Markdown tables to stdout; asserts nothing: it measures.

**purchase_30d against the planted truth.** The generator's planted P(purchase in 30 days)
knows each customer's latent state: whether they are still "alive" (they drop out after a
purchase with a latent probability) and their true traits. The table compares, on the same
calibration-half customers the pipeline reports its metrics on:
- the model, trained exactly as the propensity asset trains it;
- a *feature ceiling*: LightGBM fitted to the planted probability itself (a noise-free
  target) on the same training customers, cutoffs and features: what these features carry;
- the *observable truth* (``p_purchase_30d_observed``): every planted trait, every purchase
  and visit, and in place of the hidden alive flag its posterior given them
  (``synthetic.generate.AliveEvidence``): what a perfect observer could state;
- the planted truth, which also knows the dropout draws that nothing in the data records.

**discount_next_order against its baseline.** In the generator, a customer's discount
sensitivity shows in the data only through their orders: whether each was discounted (more
likely on promo days) and, weakly, how many fall on promo days. The *discount observer*
scores each validation customer with the exact posterior of that trait given their orders
up to the cutoff: the population's true trait distribution as the prior, the generator's
own discount probabilities, the true promo calendar. It is the best score any model of the
order history can reach on average; if it does not beat the past-rate baseline, no model can.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project.defs.propensity.assets import (  # noqa: E402
    TRAINING_SQL,
    PropensityConfig,
    train_config,
)
from dagster_project.lib import propensity as pm  # noqa: E402
from dagster_project.lib.features import FEATURE_COLUMNS  # noqa: E402
from dagster_project.synthetic.world import discount_probability  # noqa: E402

MARGIN_DESTROYER_DISCOUNT = 0.95  # synthetic.generate: their orders' discount probability
PROMO_HAZARD_GAIN = 2.5  # synthetic.generate: hazard x (1 + 2.5 ds) on promo days

ORDERS_SQL = """
select o.customer_id, o.order_date, o.is_discounted
from intermediate.int_orders__economics o
where o.visible_from <= $cutoff and o.order_date <= $cutoff and not o.fx_missing
"""


def training_frame(con, target: str, as_of: dt.date, n_cutoffs: int) -> pd.DataFrame:
    return con.execute(TRAINING_SQL.replace("{target}", target),
                       {"as_of": as_of, "n_cutoffs": n_cutoffs, "max_customers": 2**62}).df()


def purchase_table(con, as_of: dt.date, truth_dir: Path, cutoffs: list[int], tc) -> None:
    target = "purchase_30d"
    truth = pd.read_parquet(truth_dir / "purchase_probability.parquet")
    truth["cutoff_date"] = pd.to_datetime(truth["cutoff_date"])
    print("| training cutoffs | training rows | evaluation rows | model AUC | feature ceiling "
          "AUC | observable truth AUC | planted truth AUC | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in cutoffs:
        t0 = time.perf_counter()
        frame = training_frame(con, target, as_of, n)
        result = pm.train_target(frame, target, FEATURE_COLUMNS, tc)
        prepared = pm.prepare(frame, target).merge(
            truth, on=["cutoff_date", "customer_id"], how="left")
        train = prepared[(prepared["fold"] == "train") & prepared["p_purchase_30d"].notna()]
        evaluation = prepared[(prepared["fold"] == "calibration")
                              & prepared["p_purchase_30d"].notna()]
        y = evaluation[target].to_numpy()
        model_auc = roc_auc_score(y, pm.score(result, evaluation)["raw_score"])
        ceiling = pm.fit_soft_target(train, "p_purchase_30d", FEATURE_COLUMNS, tc)
        ceiling_auc = roc_auc_score(y, ceiling.predict(pm._matrix(evaluation, FEATURE_COLUMNS)))
        observable_auc = roc_auc_score(y, evaluation["p_purchase_30d_observed"])
        truth_auc = roc_auc_score(y, evaluation["p_purchase_30d"])
        print(f"| {n} | {len(train):,} | {len(evaluation):,} | {model_auc:.3f} | "
              f"{ceiling_auc:.3f} | {observable_auc:.3f} | {truth_auc:.3f} | "
              f"{time.perf_counter() - t0:.1f} |")


def discount_observer(orders: pd.DataFrame, customers: pd.DataFrame,
                      calendar: pd.DataFrame) -> pd.Series:
    """Posterior mean P(next order discounted) per customer given their past orders
    (customer_id, order_date, is_discounted), vectorised over a grid of the trait."""
    normal = customers[~customers["is_margin_destroyer"]]["discount_sensitivity"].to_numpy()
    grid = (np.arange(200) + 0.5) / 200
    prior = np.histogram(normal, bins=200, range=(0, 1))[0] + 1e-9
    prior = prior / prior.sum() * (1 - customers["is_margin_destroyer"].mean())
    md_prior = customers["is_margin_destroyer"].mean()
    promo_days = set(pd.to_datetime(calendar.loc[calendar["promo"], "date"]).dt.date)
    share = len(promo_days) / len(calendar)
    o = orders.assign(promo=pd.to_datetime(orders["order_date"]).dt.date.isin(promo_days))
    counts = (o.groupby(["customer_id", "promo", "is_discounted"]).size()
              .unstack(["promo", "is_discounted"], fill_value=0))
    for col in [(p, d) for p in (True, False) for d in (True, False)]:
        if col not in counts.columns:
            counts[col] = 0
    pp, pn = discount_probability(grid, True), discount_probability(grid, False)
    gain = share * (1 + PROMO_HAZARD_GAIN * grid)
    t = gain / (gain + 1 - share)  # P(an order falls on a promo day | trait)
    n = {k: counts[k].to_numpy(dtype=float)[:, None] for k in counts.columns}
    ll = (n[(True, True)] * np.log(pp * t) + n[(True, False)] * np.log((1 - pp) * t)
          + n[(False, True)] * np.log(pn * (1 - t))
          + n[(False, False)] * np.log((1 - pn) * (1 - t)))
    m = MARGIN_DESTROYER_DISCOUNT
    t_md = share / (share + (1 - share))
    ll_md = (n[(True, True)] * np.log(m * t_md) + n[(True, False)] * np.log((1 - m) * t_md)
             + n[(False, True)] * np.log(m * (1 - t_md))
             + n[(False, False)] * np.log((1 - m) * (1 - t_md)))[:, 0]
    top = np.maximum(ll.max(axis=1), ll_md)
    w = prior * np.exp(ll - top[:, None])
    w_md = md_prior * np.exp(ll_md - top)
    p_next = share * pp + (1 - share) * pn
    score = ((w * p_next).sum(axis=1) + w_md * m) / (w.sum(axis=1) + w_md)
    no_history = float((prior * p_next).sum() + md_prior * m)
    return pd.Series(score, index=counts.index).reindex(customers["customer_id"]).fillna(no_history)


def discount_table(con, as_of: dt.date, truth_dir: Path, tc) -> None:
    target = "discount_next_order"
    frame = training_frame(con, target, as_of, 6)
    result = pm.train_target(frame, target, FEATURE_COLUMNS, tc)
    evaluation = pm.prepare(frame, target)
    evaluation = evaluation[evaluation["fold"] == "calibration"]
    cutoff = pd.Timestamp(evaluation["cutoff_date"].iloc[0]).date()
    customers = pd.read_parquet(truth_dir / "customers.parquet")
    calendar = pd.read_parquet(truth_dir / "calendar.parquet")
    orders = con.execute(ORDERS_SQL, {"cutoff": cutoff}).df()
    observer = discount_observer(orders, customers, calendar)
    y = evaluation[target].to_numpy()
    baseline = pm._baseline_score(evaluation, tc.baselines[target])
    scores = {
        "model": pm.score(result, evaluation)["raw_score"].to_numpy(),
        "discount observer": observer.reindex(evaluation["customer_id"]).to_numpy(),
        "planted trait (not observable)": customers.set_index("customer_id")
        .loc[evaluation["customer_id"], "discount_sensitivity"].to_numpy(),
    }
    print(f"\ndiscount_next_order at {cutoff}: {len(evaluation):,} calibration-half customers "
          f"({int(y.sum()):,} positive); baseline "
          f"({tc.baselines[target].description}) AUC {roc_auc_score(y, baseline):.3f}\n")
    print("| score | AUC | minus baseline [95% interval] | verdict |")
    print("| --- | --- | --- | --- |")
    for name, s in scores.items():
        c = pm.auc_difference(y, s, baseline, seed=tc.seed)
        print(f"| {name} | {roc_auc_score(y, s):.3f} | {c['auc_difference']:+.3f} "
              f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['verdict']} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--date", type=dt.date.fromisoformat, required=True)
    p.add_argument("--truth", type=Path, required=True, help="the generator's truth folder")
    p.add_argument("--cutoffs", type=int, nargs="+", default=[6],
                   help="training cutoffs to try for purchase_30d (the asset uses 6)")
    a = p.parse_args()
    tc = train_config(PropensityConfig())
    con = duckdb.connect(str(a.db), read_only=True)
    purchase_table(con, a.date, a.truth, a.cutoffs, tc)
    discount_table(con, a.date, a.truth, tc)
    con.close()


if __name__ == "__main__":
    main()
