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
- the planted truth, which also knows the dropout draws that nothing in the data records;
- *model + planted traits*: the model trained as the asset trains it, on the labels, with
  four planted traits added as features (daily base hazard, buying mode, buying cycle,
  dropout probability): what a model would reach if it could read these four traits off
  each customer's history perfectly, i.e. how much of the gap to the planted truth better
  estimates of them would close (the other traits that move the hazard, such as trust and
  media share, are left out).

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
    PropensityConfig,
    recent_training_frame,
    train_config,
)
from dagster_project.lib import propensity as pm  # noqa: E402
from dagster_project.lib.features import FEATURE_COLUMNS  # noqa: E402
from dagster_project.synthetic.world import (  # noqa: E402
    MARGIN_DESTROYER_DISCOUNT,
    PROMO_HAZARD_GAIN,
    discount_probability,
)

ORDERS_SQL = """
select o.customer_id, o.order_date, o.is_discounted
from intermediate.int_orders__economics o
where o.visible_from <= $cutoff and o.order_date <= $cutoff and not o.fx_missing
"""


def training_frame(con, target: str, as_of: dt.date, n_cutoffs: int) -> pd.DataFrame:
    return recent_training_frame(con, target, as_of, n_cutoffs)


TRAITS = ("base_hazard", "buying_mode", "cycle_days", "dropout_prob")


def planted_traits(truth_dir: Path) -> pd.DataFrame:
    """The four planted traits that set a customer's purchase hazard, as numeric columns."""
    c = pd.read_parquet(truth_dir / "customers.parquet", columns=["customer_id", *TRAITS])
    modes = sorted(c["buying_mode"].astype(str).unique())
    return c.assign(buying_mode=c["buying_mode"].astype(str).map(modes.index).astype(float))


def purchase_table(con, as_of: dt.date, truth_dir: Path, cutoffs: list[int], tc) -> None:
    target = "purchase_30d"
    truth = pd.read_parquet(truth_dir / "purchase_probability.parquet")
    truth["cutoff_date"] = pd.to_datetime(truth["cutoff_date"])
    traits = planted_traits(truth_dir)
    print("| training cutoffs | training rows | evaluation rows | model AUC | feature ceiling "
          "AUC | model + planted traits AUC | observable truth AUC | planted truth AUC | "
          "seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in cutoffs:
        t0 = time.perf_counter()
        frame = training_frame(con, target, as_of, n)
        informed = frame.merge(traits, on="customer_id", how="left")
        oracle = pm.train_target(informed, target, (*FEATURE_COLUMNS, *TRAITS), tc)
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
        informed_eval = evaluation.merge(traits, on="customer_id", how="left")
        oracle_auc = roc_auc_score(y, pm.score(oracle, informed_eval)["raw_score"])
        observable_auc = roc_auc_score(y, evaluation["p_purchase_30d_observed"])
        truth_auc = roc_auc_score(y, evaluation["p_purchase_30d"])
        print(f"| {n} | {len(train):,} | {len(evaluation):,} | {model_auc:.3f} | "
              f"{ceiling_auc:.3f} | {oracle_auc:.3f} | {observable_auc:.3f} | {truth_auc:.3f} | "
              f"{time.perf_counter() - t0:.1f} |")


def order_counts(orders: pd.DataFrame, promo_days: set[dt.date]) -> pd.DataFrame:
    """Per customer: orders on promo days discounted / not, on other days discounted / not."""
    o = orders.assign(promo=pd.to_datetime(orders["order_date"]).dt.date.isin(promo_days),
                      disc=orders["is_discounted"].astype(bool))
    out = pd.DataFrame({
        "promo_disc": o["promo"] & o["disc"], "promo_full": o["promo"] & ~o["disc"],
        "off_disc": ~o["promo"] & o["disc"], "off_full": ~o["promo"] & ~o["disc"],
    }).astype(int)
    return out.groupby(o["customer_id"]).sum()


def discount_posterior(counts: pd.DataFrame, sensitivities: np.ndarray, md_share: float,
                       promo_share: float) -> pd.Series:
    """Posterior mean P(next order discounted) per row of ``counts`` (order_counts), exact on
    a grid of the trait: the prior is the distribution of ``sensitivities`` (the ordinary
    customers' planted trait) plus an atom of margin destroyers (``md_share``, who use a
    discount with MARGIN_DESTROYER_DISCOUNT whatever the day); an order falls on a promo day
    with odds promo_share / (1 - promo_share) x (1 + PROMO_HAZARD_GAIN x trait), and is
    discounted with the generator's discount_probability."""
    grid = (np.arange(200) + 0.5) / 200
    prior = np.histogram(sensitivities, bins=200, range=(0, 1))[0] + 1e-9
    prior = prior / prior.sum() * (1 - md_share)
    pp, pn = discount_probability(grid, True), discount_probability(grid, False)
    gain = promo_share * (1 + PROMO_HAZARD_GAIN * grid)
    t = gain / (gain + 1 - promo_share)  # P(an order falls on a promo day | trait)
    m, t_md = MARGIN_DESTROYER_DISCOUNT, promo_share
    n = {k: counts[k].to_numpy(dtype=float)[:, None] for k in counts.columns}

    def loglik(p_promo, p_off, t):
        return (n["promo_disc"] * np.log(p_promo * t) + n["promo_full"] * np.log((1 - p_promo) * t)
                + n["off_disc"] * np.log(p_off * (1 - t))
                + n["off_full"] * np.log((1 - p_off) * (1 - t)))

    ll = loglik(pp, pn, t)
    ll_md = loglik(m, m, t_md)[:, 0]
    top = np.maximum(ll.max(axis=1), ll_md)
    w = prior * np.exp(ll - top[:, None])
    w_md = md_share * np.exp(ll_md - top)
    p_next = t * pp + (1 - t) * pn
    return pd.Series(((w * p_next).sum(axis=1) + w_md * m) / (w.sum(axis=1) + w_md),
                     index=counts.index)


def discount_observer(orders: pd.DataFrame, customers: pd.DataFrame,
                      calendar: pd.DataFrame) -> pd.Series:
    """discount_posterior for every customer of the truth, from their past orders
    (customer_id, order_date, is_discounted) and the true promo calendar."""
    md = customers["is_margin_destroyer"].to_numpy(dtype=bool)
    promo_days = set(pd.to_datetime(calendar.loc[calendar["promo"], "date"]).dt.date)
    counts = order_counts(orders, promo_days).reindex(customers["customer_id"], fill_value=0)
    return discount_posterior(counts, customers.loc[~md, "discount_sensitivity"].to_numpy(),
                              float(md.mean()), len(promo_days) / len(calendar))


def observer_scores(con, evaluation: pd.DataFrame, truth_dir: Path) -> np.ndarray:
    """The discount observer's score for each row of ``evaluation`` (one validation cutoff),
    from the orders visible at that cutoff."""
    cutoffs = pd.to_datetime(evaluation["cutoff_date"]).dt.date.unique()
    if len(cutoffs) != 1:
        raise ValueError(f"expected one validation cutoff, got {sorted(cutoffs)}")
    orders = con.execute(ORDERS_SQL, {"cutoff": cutoffs[0]}).df()
    observer = discount_observer(orders, pd.read_parquet(truth_dir / "customers.parquet"),
                                 pd.read_parquet(truth_dir / "calendar.parquet"))
    return observer.reindex(evaluation["customer_id"]).to_numpy()


def discount_table(con, as_of: dt.date, truth_dir: Path, tc) -> None:
    target = "discount_next_order"
    frame = training_frame(con, target, as_of, 6)
    result = pm.train_target(frame, target, FEATURE_COLUMNS, tc)
    evaluation = pm.prepare(frame, target)
    evaluation = evaluation[evaluation["fold"] == "calibration"]
    customers = pd.read_parquet(truth_dir / "customers.parquet").set_index("customer_id")
    y = evaluation[target].to_numpy()
    baseline = pm._baseline_score(evaluation, tc.baselines[target])
    scores = {
        "model": pm.score(result, evaluation)["raw_score"].to_numpy(),
        "discount observer": observer_scores(con, evaluation, truth_dir),
        "planted trait (not observable)":
            customers.loc[evaluation["customer_id"], "discount_sensitivity"].to_numpy(),
    }
    print(f"\ndiscount_next_order at {result.valid_cutoff}: {len(evaluation):,} calibration-half "
          f"customers ({int(y.sum()):,} positive); baseline "
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
