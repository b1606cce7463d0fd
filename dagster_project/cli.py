"""Command line for cron-only shops and for `make run`: run partitions of the nightly job
in-process against the Dagster instance in $DAGSTER_HOME, print a summary, exit non-zero on
failure.

    python -m dagster_project.cli run                       # latest partition (yesterday, UTC)
    python -m dagster_project.cli run --date 2025-06-30     # one partition
    python -m dagster_project.cli run --date 2025-06-01 --end 2025-06-07   # a backfill, day by day
    python -m dagster_project.cli summary [--date ...]      # what is in the warehouse
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import duckdb

from dagster_project import settings

SUMMARY_TABLES = [
    ("raw", "SELECT count(*) FROM raw.crm__orders WHERE _file_date <= $d", "raw orders landed"),
    ("raw", "SELECT count(*) FROM raw.web__events WHERE _file_date <= $d", "raw web events landed"),
    ("raw", "SELECT count(*) FROM raw.quarantine q JOIN raw.ingested_files f USING (raw_table, file)"
            " WHERE f.file_date <= $d", "rows in quarantine"),
    ("marts", "SELECT count(*) FROM marts.customer_features WHERE as_of_date = $d",
     "customers with features"),
    ("marts", "SELECT count(*) FROM marts.customer_labels WHERE as_of_date = $d",
     "training label rows"),
    ("segmentation", "SELECT count(*) FROM segmentation.customer_states WHERE as_of_date = $d",
     "customer states"),
    ("segmentation", "SELECT count(*) FROM segmentation.propensity_scores WHERE as_of_date = $d",
     "scored customers"),
    ("segmentation", "SELECT count(*) FILTER (WHERE status = 'trained') || ' trained, ' || "
                     "count(*) FILTER (WHERE status = 'absent') || ' absent' "
                     "FROM segmentation.model_metrics WHERE as_of_date = $d", "models"),
]


def latest_partition() -> str:
    from dagster_project.defs.partitions import daily_partitions

    keys = daily_partitions.get_partition_keys()
    if not keys:
        raise SystemExit("no partitions exist yet (check DS_PARTITION_START)")
    return keys[-1]


def _dates(start: str, end: str | None) -> list[str]:
    a = dt.date.fromisoformat(start)
    b = dt.date.fromisoformat(end) if end else a
    if b < a:
        raise SystemExit(f"--end {b} is before --date {a}")
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def run(dates: list[str]) -> int:
    import dagster as dg

    from dagster_project.definitions import defs

    job = defs().get_job_def("nightly")
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    for d in dates:
        print(f"== nightly partition {d}", flush=True)
        result = job.execute_in_process(partition_key=d, instance=instance, raise_on_error=False)
        if not result.success:
            failed = [e for e in result.all_events if e.is_failure]
            for e in failed:
                err = e.event_specific_data.error if hasattr(e.event_specific_data, "error") else None
                print(f"FAILED step {e.step_key}: {err.message.strip() if err else e.message}",
                      file=sys.stderr)
            print(f"partition {d} failed (run {result.run_id})", file=sys.stderr)
            return 1
        print(f"partition {d} succeeded (run {result.run_id})")
    return 0


def summary(date: str) -> None:
    db = settings.duckdb_path()
    print(f"\nwarehouse: {os.path.relpath(db)}")
    if not db.exists():
        print("  (no warehouse yet)")
        return
    con = duckdb.connect(str(db), read_only=True)
    try:
        for _, sql, label in SUMMARY_TABLES:
            try:
                value = con.execute(sql, {"d": dt.date.fromisoformat(date)}).fetchone()[0]
            except duckdb.CatalogException:
                value = "(not built)"
            print(f"  {label:<28} {value}")
        try:
            rows = con.execute(
                "SELECT target, status, round(model_roc_auc, 3), round(baseline_roc_auc, 3), "
                "beats_baseline FROM segmentation.model_metrics WHERE as_of_date = ? "
                "ORDER BY target", [dt.date.fromisoformat(date)]).fetchall()
            if rows:
                print("  models (ROC AUC vs naive baseline):")
                for t, status, auc, base, beats in rows:
                    flag = "" if beats or status != "trained" else "  <-- does not beat baseline"
                    print(f"    {t:<20} {status:<8} {auc} vs {base}{flag}")
        except duckdb.CatalogException:
            pass
    finally:
        con.close()
    for label, path in (("raw files", settings.raw_dir()), ("models", settings.models_dir()),
                        ("exports", settings.exports_dir()), ("reports", settings.reports_dir())):
        print(f"  {label:<28} {os.path.relpath(path)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dagster_project.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the nightly job for one partition or a range")
    r.add_argument("--date", default="latest", help="YYYY-MM-DD or 'latest' (default)")
    r.add_argument("--end", default=None, help="last date of a range (inclusive)")
    s = sub.add_parser("summary", help="print what the warehouse holds for a partition")
    s.add_argument("--date", default="latest")
    args = p.parse_args(argv)
    date = latest_partition() if args.date == "latest" else args.date
    if args.cmd == "run":
        rc = run(_dates(date, args.end))
        summary(args.end or date)
        return rc
    summary(date)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
