"""Evidence for the training-row sampling policy: what does sampling customers cost in AUC?

    python scripts/sampling_evidence.py --db data/bench/100000/warehouse.duckdb \
        --date 2025-06-30 --sizes 10000 25000 50000 0 --targets purchase_30d churn_90d

For each target and each ``max_train_customers`` (0 = every labelled customer) it trains the
model exactly as the propensity asset does (same SQL, same lib/propensity.train_target, the
asset's default PropensityConfig) and scores ONE common evaluation set: every customer of
the validation cutoff in the calibration half (customer-hash parity, never used for training
or early stopping, whatever the sample). So the AUCs differ only by the training sample.
Writes a Markdown table to stdout. Not a test: it measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project.defs.propensity.assets import (
    PropensityConfig,
    recent_training_frame,
    train_config,
)
from dagster_project.lib import propensity as pm
from dagster_project.lib.features import FEATURE_COLUMNS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--date", type=dt.date.fromisoformat, required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 25_000, 50_000, 0])
    p.add_argument("--targets", nargs="+", default=["purchase_30d", "churn_90d"])
    a = p.parse_args()
    cfg = PropensityConfig()
    tc = train_config(cfg)
    con = duckdb.connect(str(a.db), read_only=True)
    print("| target | max_train_customers | training rows | train s | best iteration "
          "| AUC on the common evaluation set | evaluation rows |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for target in a.targets:
        def frame(max_customers: int, target: str = target):
            return recent_training_frame(con, target, a.date, cfg.n_train_cutoffs,
                                         max_customers or 2**62)
        full = pm.prepare(frame(0), target)
        evaluation = full.loc[full["fold"] == "calibration"]
        y = evaluation[target].to_numpy(dtype=float)
        x = evaluation[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
        for size in a.sizes:
            f = frame(size)
            t0 = time.perf_counter()
            r = pm.train_target(f, target, FEATURE_COLUMNS, tc)
            secs = time.perf_counter() - t0
            if not r.trained:
                print(f"| {target} | {size or 'all'} | {len(f):,} | | | absent: "
                      f"{r.absent_reason} | |")
                continue
            auc = roc_auc_score(y, r.booster.predict(x, raw_score=True))
            print(f"| {target} | {size or 'all'} | {r.n_rows['train']:,} | {secs:.1f} | "
                  f"{r.best_iteration} | {auc:.4f} | {len(y):,} |", flush=True)
    con.close()


if __name__ == "__main__":
    main()
