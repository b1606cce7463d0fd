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

``eval`` reads each target's training frame with the asset's TRAINING_SQL and trains it with
``pm.train_target``, the asset's code path, and prints per shop and target: the model AUC
(calibration half), the naive baseline's and BG/NBD's, the model minus BG/NBD AUC with its
paired bootstrap 95% interval, the top-decile lifts, and the training seconds. ``--config
key=value`` overrides a PropensityConfig field (e.g. ``train_span_weeks=52``). It asserts
nothing: it measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project.defs.propensity import assets as pa  # noqa: E402
from dagster_project.lib import propensity as pm  # noqa: E402
from dagster_project.lib.features import FEATURE_COLUMNS  # noqa: E402

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


def training_frame(con, target: str, as_of: dt.date, cfg: pa.PropensityConfig) -> pd.DataFrame:
    return pa.read_training_frame(con, target, as_of, cfg)


def evaluate(root: Path, targets: tuple[str, ...], cfg: pa.PropensityConfig) -> list[dict]:
    shop = json.loads((root / "shop.json").read_text())
    as_of = dt.date.fromisoformat(shop["as_of"])
    tc = pa.train_config(cfg)
    rows = []
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        for target in targets:
            frame = training_frame(con, target, as_of, cfg)
            t0 = time.perf_counter()
            r = pm.train_target(frame, target, FEATURE_COLUMNS, tc)
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
    a = p.parse_args(argv)
    if a.cmd == "build":
        print(json.dumps(build(a.root, a.currency, a.n_cutoffs)))
        return
    cfg = _config(a.config)
    rows = [r for root in a.root for r in evaluate(root, tuple(a.targets), cfg)]
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
