"""The propensity models against BG/NBD and the naive baseline on CRM-only shops.

    # once per shop: a warehouse (ingest + dbt build) under ROOT, from ROOT/raw
    python scripts/model_vs_btyd.py build --root DIR --currency GBP [--n-cutoffs 18]
    # then, as often as wanted: train every target as the asset does and compare
    python scripts/model_vs_btyd.py eval --root DIR [--root DIR2 ...] [--targets ...]

``ROOT/raw`` is a shop export in the input contract, e.g. written by
``python -m dagster_project.synthetic.shapes --shape cohort --out ROOT/raw`` or by the main
generator with ``--no-web --no-ads --no-returns --no-support --no-fx --no-activation``.
``build`` ingests every file, runs ``dbt build`` for the last order day (the as-of date;
stored in ROOT/shop.json with the reporting currency) and its ``--n-cutoffs`` weekly feature
dates (dbt's default is 18; a longer grid lets ``eval --config`` try training cutoffs spread
over a year: the 18 most recent dates are the same either way).

``backtest`` pretends the run happened at earlier dates and scores every customer there
against what they did next: the validated model, its refit on all customers, BG/NBD.

``eval`` reads each target's training frame as the asset does (training_frame_at) and trains it with
``pm.train_target``, the asset's code path, and prints per shop and target: the model AUC
(calibration half), the naive baseline's and BG/NBD's, the model minus BG/NBD AUC with its
paired bootstrap 95% interval, the top-decile lifts, and the training seconds. ``--config
key=value`` overrides a PropensityConfig field (e.g. ``train_span_weeks=52``). It asserts
nothing: it measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project.defs.propensity import assets as pa  # noqa: E402
from dagster_project.lib import propensity as pm  # noqa: E402
from dagster_project.lib.features import MODEL_FEATURE_COLUMNS  # noqa: E402

DEFAULT_TARGETS = ("purchase_7d", "purchase_30d", "churn_90d", "repeat_90d")


def build(root: Path, currency: str, n_cutoffs: int | None) -> dict:
    from dagster_project import settings
    from dagster_project.lib.dbt_vars import dbt_state_dir, dbt_vars
    from dagster_project.lib.ingest import ingest_partition

    orders = sorted((root / "raw" / "crm" / "orders").glob("*.csv"))
    as_of = dt.date.fromisoformat(orders[-1].stem)
    db = root / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    try:
        ingest_partition(con, root / "raw", as_of)
    finally:
        con.close()
    overrides: dict = {"reporting_currency": currency}
    if n_cutoffs:
        overrides["n_cutoffs"] = n_cutoffs
    import os
    import subprocess

    exe = Path(sys.executable).parent / "dbt"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(exe), "build", "--vars", dbt_vars(as_of.isoformat(), **overrides), "--quiet",
         "--select", "+customer_features +customer_labels",
         "--project-dir", str(settings.DBT_DIR), "--profiles-dir", str(settings.DBT_DIR)],
        env={**os.environ, "DS_DUCKDB_PATH": str(db), "DBT_TARGET_PATH": str(dbt_state_dir(db))},
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"dbt build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    shop = {"as_of": as_of.isoformat(), "currency": currency, "n_cutoffs": n_cutoffs or 18,
            "dbt_seconds": round(time.perf_counter() - t0, 1)}
    (root / "shop.json").write_text(json.dumps(shop, indent=2))
    return shop


def labelled_cutoffs(con, target: str, as_of: dt.date, feature_weeks: int | None = None,
                     before: dt.date | None = None, horizon: int = 0) -> list[dt.date]:
    """The target's labelled cutoffs; with ``feature_weeks`` only those the default dbt grid
    (that many weekly feature dates) would hold; with ``before`` only those whose label
    window ends by it (a backtest's pretended as-of date)."""
    rows = con.execute(pa.LABELLED_CUTOFFS_SQL.replace("{target}", target),
                       {"as_of": as_of}).fetchall()
    out = [r[0] for r in rows]
    if feature_weeks:
        out = [c for c in out if (as_of - c).days <= 7 * feature_weeks]
    if before is not None:
        out = [c for c in out if c + dt.timedelta(days=horizon) <= before]
    return out


def training_frame(con, target: str, as_of: dt.date, cfg: pa.PropensityConfig,
                   cutoffs: list[dt.date]) -> pd.DataFrame:
    """What ``pa.read_training_frame`` reads, on the grid ``training_cutoffs`` picks from
    ``cutoffs``."""
    return pa.training_frame_at(con, target, as_of, pa.training_cutoffs(cutoffs, cfg),
                                cfg.max_train_customers)


def _open_shop(root: Path) -> tuple[dt.date, duckdb.DuckDBPyConnection]:
    """A built shop's as-of date and a read-only connection to its warehouse."""
    shop = json.loads((root / "shop.json").read_text())
    return (dt.date.fromisoformat(shop["as_of"]),
            duckdb.connect(str(root / "warehouse.duckdb"), read_only=True))


def evaluate(root: Path, targets: tuple[str, ...], cfg: pa.PropensityConfig,
             feature_weeks: int | None = None) -> list[dict]:
    as_of, con = _open_shop(root)
    tc = pa.train_config(cfg)
    rows = []
    try:
        for target in targets:
            frame = training_frame(con, target, as_of, cfg,
                                   labelled_cutoffs(con, target, as_of, feature_weeks))
            t0 = time.perf_counter()
            r = pm.train_target(frame, target, MODEL_FEATURE_COLUMNS, tc)
            seconds = time.perf_counter() - t0
            row = {"shop": root.name, "target": target, "seconds": seconds,
                   "absent": r.absent_reason}
            if r.trained:
                row.update(
                    auc=r.metrics["roc_auc"], lift=r.metrics["top_decile_lift"],
                    baseline=r.baseline_metrics["roc_auc"], n_cal=r.n_rows["calibration"],
                    n_train=r.n_rows["train"], n_cutoffs=len(r.train_cutoffs),
                    trees=r.best_iteration, pos=r.metrics["n_pos"])
                b = r.btyd or {}
                if b.get("comparison"):
                    c = b["comparison"]
                    row.update(btyd=b["metrics"]["roc_auc"],
                               btyd_lift=b["metrics"]["top_decile_lift"],
                               diff=c["auc_difference"], lo=c["ci_low"], hi=c["ci_high"])
            rows.append(row)
    finally:
        con.close()
    return rows


def backtest(root: Path, targets: tuple[str, ...], cfg: pa.PropensityConfig, n_dates: int,
             every_days: int, feature_weeks: int | None) -> list[dict]:
    """Pretend the run happened at an earlier date A (the latest labelled cutoff, then every
    ``every_days`` before it): train on the cutoffs whose label windows end by A, exactly as
    the asset would at A, then score EVERY customer labelled at A from their features at A
    and measure against what they did next (the warehouse's labels at A). Compares the
    validated model, its refit on all customers, BG/NBD fitted at A on every customer's
    features at A (no labels: what the pipeline could fit that night) and the baseline."""
    from sklearn.metrics import roc_auc_score

    from dagster_project.lib import btyd
    from dagster_project.lib.features import LABEL_HORIZON_DAYS

    as_of, con = _open_shop(root)
    tc = pa.train_config(cfg)
    rows = []
    try:
        for target in targets:
            h = LABEL_HORIZON_DAYS[target]
            every = labelled_cutoffs(con, target, as_of, feature_weeks)
            for j in range(n_dates):
                wanted = every[0] - dt.timedelta(days=every_days * j)
                at = next((c for c in every if c <= wanted), None)  # on the feature grid
                if at is None or any(r["target"] == target and r["at"] == at.isoformat()
                                     for r in rows if r["shop"] == root.name):
                    continue
                usable = labelled_cutoffs(con, target, as_of, feature_weeks, before=at,
                                          horizon=h)
                frame = training_frame(con, target, as_of, cfg, usable)
                r = pm.train_target(frame, target, MODEL_FEATURE_COLUMNS,
                                    dataclasses.replace(tc, refit_all=True))
                if not r.trained:
                    continue
                test = con.execute(
                    f"select l.customer_id, l.{target}, {pa.FEATURE_SQL} "
                    "from marts.customer_labels l join marts.customer_features f "
                    "on f.as_of_date = l.cutoff_date and f.customer_id = l.customer_id "
                    f"where l.as_of_date = ? and l.cutoff_date = ? and l.{target} is not null "
                    "order by l.customer_id", [as_of, at]).df()
                test = pa.with_bgnbd_features(con, test.assign(cutoff_date=at))
                y = test[target].to_numpy(dtype=float)
                m = pm.score(r, test, validated=True)["raw_score"].to_numpy()
                refit = pm.score(r, test)["raw_score"].to_numpy()
                row = {"shop": root.name, "target": target, "at": at.isoformat(),
                       "n": len(y), "pos": int(y.sum()), "model": roc_auc_score(y, m),
                       "refit": roc_auc_score(y, refit),
                       "baseline": roc_auc_score(y, pm._baseline_score(
                           test, tc.baselines[target])),
                       "refit_vs_model": pm.auc_difference(y, refit, m, seed=1),
                       "lift": pm.top_decile_lift(y, m),
                       "refit_lift": pm.top_decile_lift(y, refit)}
                if target in pm.BTYD_TARGETS:
                    everyone = con.execute(
                        "select orders_lifetime, recency_span_days, days_since_first_order "
                        "from marts.customer_features where as_of_date = ?", [at]).df()
                    params = btyd.fit(*btyd.from_features(everyone))
                    horizon, sign = pm.BTYD_TARGETS[target]
                    p = btyd.p_purchase(params, *btyd.from_features(test), horizon)
                    b = (np.where(np.isnan(p), -1.0, p) if sign > 0
                         else np.where(np.isnan(p), 2.0, 1 - p))
                    row.update(btyd=roc_auc_score(y, b), btyd_lift=pm.top_decile_lift(y, b),
                               model_vs_btyd=pm.auc_difference(y, m, b, seed=1),
                               refit_vs_btyd=pm.auc_difference(y, refit, b, seed=1))
                rows.append(row)
    finally:
        con.close()
    return rows


def backtest_table(rows: list[dict]) -> str:
    out = ["| shop | target | as-of | customers (pos) | model | refit | baseline | BG/NBD | "
           "model - BG/NBD [95% CI] | refit - model [95% CI] | lift model / refit / BG/NBD |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(
            f"| {r['shop']} | {r['target']} | {r['at']} | {r['n']:,} ({r['pos']:,}) | "
            f"{r['model']:.3f} | {r['refit']:.3f} | {r['baseline']:.3f} | "
            f"{_f(r.get('btyd'))} | {pm.describe_comparison(r.get('model_vs_btyd'))} | "
            f"{pm.describe_comparison(r['refit_vs_model'])} | {r['lift']:.2f} / "
            f"{r['refit_lift']:.2f} / {_f(r.get('btyd_lift'), '.2f')} |")
    df = pd.DataFrame(rows)
    for (shop, target), g in df.groupby(["shop", "target"], sort=False):
        line = (f"| {shop} | {target} | mean of {len(g)} | | {g['model'].mean():.3f} | "
                f"{g['refit'].mean():.3f} | {g['baseline'].mean():.3f} | ")
        line += f"{g['btyd'].mean():.3f} | " if "btyd" in g and g["btyd"].notna().all() else "| "
        line += (f"{(g['model'] - g['btyd']).mean():+.3f} | " if "btyd" in g
                 and g["btyd"].notna().all() else "| ")
        line += f"{(g['refit'] - g['model']).mean():+.3f} | |"
        out.append(line)
    return "\n".join(out)


def _f(v, fmt=".3f"):
    return "" if v is None or v != v else format(v, fmt)


def table(rows: list[dict]) -> str:
    out = ["| shop | target | model AUC | baseline | BG/NBD | model - BG/NBD [95% CI] | lift "
           "| BG/NBD lift | cal. rows (pos) | train rows / cutoffs | trees | s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r.get("absent"):
            out.append(f"| {r['shop']} | {r['target']} | absent: {r['absent']} |"
                       + " |" * 9)
            continue
        diff = (f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]" if "diff" in r else "")
        out.append(
            f"| {r['shop']} | {r['target']} | {_f(r['auc'])} | {_f(r['baseline'])} | "
            f"{_f(r.get('btyd'))} | {diff} | {_f(r['lift'], '.2f')} | "
            f"{_f(r.get('btyd_lift'), '.2f')} | {r['n_cal']:,} ({r['pos']:,}) | "
            f"{r['n_train']:,} / {r['n_cutoffs']} | {r['trees']} | {r['seconds']:.1f} |")
    return "\n".join(out)


def _config(pairs: list[str]) -> pa.PropensityConfig:
    kw = {}
    for p in pairs:
        k, v = p.split("=", 1)
        field = pa.PropensityConfig.model_fields[k]
        kw[k] = field.annotation(v) if field.annotation in (int, float, str) else json.loads(v)
    return pa.PropensityConfig(**kw)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--root", type=Path, required=True)
    b.add_argument("--currency", required=True)
    b.add_argument("--n-cutoffs", type=int, default=None)
    e = sub.add_parser("eval")
    e.add_argument("--root", type=Path, action="append", required=True)
    e.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS))
    e.add_argument("--config", nargs="*", default=[], help="PropensityConfig key=value")
    e.add_argument("--json", type=Path, default=None, help="also write the rows here")
    e.add_argument("--feature-weeks", type=int, default=None,
                   help="use only the labelled cutoffs of a dbt grid of this many weekly "
                   "feature dates (18 is dbt's default) on a warehouse built with more")
    t = sub.add_parser("backtest")
    t.add_argument("--root", type=Path, action="append", required=True)
    t.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS))
    t.add_argument("--config", nargs="*", default=[], help="PropensityConfig key=value")
    t.add_argument("--dates", type=int, default=4, help="pretended as-of dates per target")
    t.add_argument("--every-days", type=int, default=28)
    t.add_argument("--feature-weeks", type=int, default=None)
    t.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.cmd == "backtest":
        rows = [r for root in a.root for r in backtest(
            root, tuple(a.targets), _config(a.config), a.dates, a.every_days, a.feature_weeks)]
        print(backtest_table(rows))
        if a.json:
            a.json.write_text(json.dumps(rows, indent=2, default=str))
        return
    if a.cmd == "build":
        print(json.dumps(build(a.root, a.currency, a.n_cutoffs)))
        return
    cfg = _config(a.config)
    rows = [r for root in a.root
            for r in evaluate(root, tuple(a.targets), cfg, a.feature_weeks)]
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
