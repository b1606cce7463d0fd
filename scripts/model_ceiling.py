"""How much of the planted truth can the features carry? The ceiling behind issue 3's gap.

    python scripts/model_ceiling.py --db data/warehouse.duckdb --date 2026-11-25 \
        --truth data/truth/purchase_probability.parquet

The generator's planted P(purchase in 30 days) knows each customer's latent state: whether
they are still "alive" (they drop out after a purchase with a latent probability) and their
true purchase rate. The pipeline only sees what they did. This script trains the purchase_30d
model exactly as the propensity asset does, and next to it a *feature ceiling*: LightGBM
fitted to the planted probability itself (a noise-free target, cross-entropy objective) on the
same training customers, cutoffs and features. Both are scored on the same calibration-half
customers. If the ceiling is as far from the truth as the model, the gap is information the
features do not carry, not a training problem. Writes a Markdown table to stdout; asserts
nothing: it measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import duckdb
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

TARGET = "purchase_30d"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--date", type=dt.date.fromisoformat, required=True)
    p.add_argument("--truth", type=Path, required=True, help="purchase_probability.parquet")
    p.add_argument("--cutoffs", type=int, nargs="+", default=[6, 18],
                   help="training cutoffs to try (the asset uses 6)")
    a = p.parse_args()
    cfg = PropensityConfig()
    tc = train_config(cfg)
    truth = pd.read_parquet(a.truth)
    truth["cutoff_date"] = pd.to_datetime(truth["cutoff_date"])
    con = duckdb.connect(str(a.db), read_only=True)
    print("| training cutoffs | training rows | evaluation rows | model AUC | feature ceiling "
          "AUC | planted truth AUC | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in a.cutoffs:
        t0 = time.perf_counter()
        frame = con.execute(TRAINING_SQL.replace("{target}", TARGET),
                            {"as_of": a.date, "n_cutoffs": n, "max_customers": 2**62}).df()
        result = pm.train_target(frame, TARGET, FEATURE_COLUMNS, tc)
        prepared = pm.prepare(frame, TARGET).merge(
            truth, on=["cutoff_date", "customer_id"], how="left")
        train = prepared[(prepared["fold"] == "train") & prepared["p_purchase_30d"].notna()]
        evaluation = prepared[(prepared["fold"] == "calibration")
                              & prepared["p_purchase_30d"].notna()]
        y = evaluation[TARGET].to_numpy()
        model_auc = roc_auc_score(y, pm.score(result, evaluation)["raw_score"])
        ceiling = pm.fit_soft_target(train, "p_purchase_30d", FEATURE_COLUMNS, tc)
        ceiling_auc = roc_auc_score(y, ceiling.predict(pm._matrix(evaluation, FEATURE_COLUMNS)))
        truth_auc = roc_auc_score(y, evaluation["p_purchase_30d"])
        print(f"| {n} | {len(train):,} | {len(evaluation):,} | {model_auc:.3f} | "
              f"{ceiling_auc:.3f} | {truth_auc:.3f} | {time.perf_counter() - t0:.1f} |")
    con.close()


if __name__ == "__main__":
    main()
