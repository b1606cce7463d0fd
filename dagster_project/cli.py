"""Command line for cron-only shops and for `make run`: run partitions of the nightly job
in-process against the Dagster instance in $DAGSTER_HOME, print a summary, exit non-zero on
failure.

    python -m dagster_project.cli run                       # latest partition (yesterday, UTC)
    python -m dagster_project.cli run --date 2025-06-30     # one partition
    python -m dagster_project.cli run --date 2025-06-01 --end 2025-06-07   # a backfill, day by day
    python -m dagster_project.cli run --config run.yaml      # with a Dagster run config
    python -m dagster_project.cli summary [--date ...]      # what is in the warehouse
    python -m dagster_project.cli prune [--keep-days 35] [--apply]  # drop old partitions

Exit codes: 0 every partition succeeded; 1 a partition published nothing (a step before
publishing failed or the gate refused: the last published version stays in place; its failed
steps and errors are printed on stderr); 2 a bad command line (unknown option, bad date, no
such partition); 3 every partition published, but a step after publishing (measurement,
report) failed. A range stops at the first partition that published nothing.
Runs are recorded in the instance of $DAGSTER_HOME when it is set (SQLite or PostgreSQL,
see deploy/), else in a throw-away in-memory instance.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys

import duckdb

from dagster_project import settings
from dagster_project.lib.alerts import ALERTED_BY_TAG

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


def missing_inputs() -> str | None:
    """What is missing for a run to start, in one line (None: nothing): the data folder, or
    the folders of the required sources (lib/contract.py)."""
    from dagster_project.lib.contract import TABLES

    raw = settings.raw_dir()
    if not raw.is_dir():
        return (f"no data folder: {shown(raw)} does not exist. Set DS_DATA_DIR to the folder "
                "holding raw/, or generate synthetic data with `make data`")
    absent = [f"{t.source}/{t.table}" for t in TABLES
              if not t.optional and not (raw / t.source / t.table).is_dir()]
    if absent:
        return (f"{shown(raw)} has no folder for the required source(s) {', '.join(absent)} "
                "(one CSV per day in each; README, Your own data)")
    return None


def latest_partition() -> str:
    from dagster_project.defs.partitions import daily_partitions

    keys = daily_partitions.get_partition_keys()
    if not keys:
        raise UsageError(partition_range_message(None, keys=[]))
    return keys[-1]


def partition_range_message(date: str | None, keys: list[str]) -> str:
    """Which days exist, where the first one comes from and how to change it."""
    start, source = settings.partition_start_and_source()
    days = (f"partitions run from {keys[0]} to {keys[-1]} (the last complete UTC day)" if keys
            else f"no partition exists: the first would be {start}, after the last complete "
                 "UTC day")
    head = f"no partition for {date}: " if date else ""
    return (f"{head}{days}; the first day is {start}, from {source}. To run earlier days, set "
            "DS_PARTITION_START=YYYY-MM-DD (or land files dated that early in the raw folder).")


class UsageError(ValueError):
    """A bad command line (exit code 2, like argparse's own errors)."""


def _date(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a date (YYYY-MM-DD)") from None


def _dates(start: str, end: str | None) -> list[str]:
    a = _date(start, "--date")
    b = _date(end, "--end") if end else a
    if b < a:
        raise UsageError(f"--end {b} is before --date {a}")
    dates = [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]
    from dagster_project.defs.partitions import daily_partitions

    known = set(daily_partitions.get_partition_keys())
    outside = [d for d in dates if d not in known]
    if outside:
        raise UsageError(partition_range_message(outside[0], keys=sorted(known)))
    return dates


def _run_config(path: str | None) -> dict | None:
    if not path:
        return None
    import yaml

    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"--config {path}: {e}") from None
    if not isinstance(config, dict):
        raise UsageError(f"--config {path}: expected a mapping (ops: ...)")
    return config


def failure_report(result) -> list[str]:
    """Lines naming each failed step with its error, and each failed ERROR-severity check."""
    from dagster_project.lib.alerts import root_error

    lines = []
    for e in result.all_events:
        if e.is_step_failure:
            err = e.step_failure_data.error if e.step_failure_data else None
            msg = (root_error(err) if err else e.message) or "(no message)"
            lines.append(f"FAILED step {e.step_key}: {msg}")
        elif e.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = e.event_specific_data
            if not ev.passed and ev.severity.value == "ERROR":
                lines.append(f"FAILED check {ev.asset_key.to_user_string()}:{ev.check_name}: "
                             f"{ev.description or ''}".rstrip(": "))
        elif e.is_run_failure and not any(x.is_step_failure for x in result.all_events):
            lines.append(f"FAILED run: {e.message}")
    return lines


def _quiet(run_config: dict | None) -> dict:
    """Console logs at INFO unless the run config says otherwise (DEBUG prints every step
    event; the full log is in the instance and the UI). DS_LOG_LEVEL overrides."""
    config = dict(run_config or {})
    level = os.environ.get("DS_LOG_LEVEL", "INFO")
    # and one line per finished step with its duration (defs/observability/progress.py)
    config.setdefault("loggers", {"console": {"config": {"log_level": level}},
                                  "progress": {}})
    return config


PUBLISH_STEP = "published_segments"
EXIT_OK, EXIT_NOTHING_PUBLISHED, EXIT_USAGE, EXIT_PUBLISHED_WITH_FAILURES = 0, 1, 2, 3


def outcome(result, partition: str) -> tuple[int, str]:
    """(exit code, one line) of one partition's run: published, published with steps outside
    the publish path failed, or nothing published."""
    failed = sorted({e.step_key for e in result.all_events if e.is_step_failure})
    published = any(e.is_step_success and e.step_key == PUBLISH_STEP for e in result.all_events)
    run = f"(run {result.run_id})"
    if result.success:
        return EXIT_OK, f"partition {partition} succeeded {run}: published"
    if published:
        return (EXIT_PUBLISHED_WITH_FAILURES,
                f"partition {partition} published with failures {run}: {len(failed)} step(s) "
                "outside the publish path failed: " + ", ".join(failed))
    return EXIT_NOTHING_PUBLISHED, (
        f"partition {partition} failed {run}: NOTHING PUBLISHED (the last published version "
        "stays in place); failed: " + (", ".join(failed) or "the run"))


def run_notes(result) -> list[str]:
    """What the run could not do, from the materializations' metadata: segments merged or
    impossible, exclusion audiences impossible, outputs absent."""
    lines = []
    for e in result.all_events:
        if e.event_type_value != "ASSET_MATERIALIZATION":
            continue
        mat = e.event_specific_data.materialization
        key = mat.asset_key.to_user_string()
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        for what in ("impossible", "merged"):
            for name, why in (meta.get(what) or {}).items():
                lines.append(f"{key}: {name} {what}: {why}")
        if meta.get("absent_reason"):
            lines.append(f"{key}: {meta['absent_reason']}")
    return lines


def wait_seconds() -> float:
    """How long `cli run` waits for a live run holding the warehouse before it gives up
    with exit code 1: DS_WAIT_FOR_WAREHOUSE_SECONDS, default an hour."""
    raw = os.environ.get("DS_WAIT_FOR_WAREHOUSE_SECONDS", "").strip() or "3600"
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"DS_WAIT_FOR_WAREHOUSE_SECONDS={raw!r}: expected seconds") from None
    if value < 0:
        raise UsageError(f"DS_WAIT_FOR_WAREHOUSE_SECONDS={raw!r}: expected seconds >= 0")
    return value


def repair_exports() -> list[str]:
    """Before a run: files of a publish cut off after its commit are switched in, files of
    one cut off before it removed (lib/exports.py). Skipped, with a line, when another
    process holds the warehouse (the run's own publish step repairs then)."""
    from dagster_project.lib import exports

    db = settings.duckdb_path()
    if not db.exists() or not settings.exports_dir().exists():
        return []
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as e:
        return [f"export repair skipped: {str(e).splitlines()[0]}"]
    try:
        return exports.repair(con, settings.exports_dir())
    finally:
        con.close()


def alert(result, partition: str, line: str) -> None:
    """A failed `cli run` alerts like the daemon's sensor does (the alerts file and the
    webhook): a shop that runs from cron has no daemon. Its runs carry ALERTED_BY_TAG, so a
    daemon that is up does not alert a second time."""
    from dagster_project.lib.alerts import deliver, root_error, run_failure_record

    steps = [(e.step_key or "?",
              root_error(e.step_failure_data.error) if e.step_failure_data else e.message)
             for e in result.all_events if e.is_step_failure]
    record = run_failure_record(result.run_id, "nightly", partition, steps, line)
    path, error = deliver(settings.data_dir() / "alerts", record)
    print(f"alert written to {path}" + (f"; webhook failed: {error}" if error else ""),
          file=sys.stderr, flush=True)


def instance_of_home():
    """The instance in DAGSTER_HOME (None without one), created under a file lock: on an
    empty home Dagster creates its SQLite tables on first use, and two processes doing it at
    once (cron's nightly and a hand backfill started together) both stamp the schema version,
    which leaves the home unusable for every later process ("Version table 'alembic_version'
    has more than one head present")."""
    import fcntl

    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return None
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, ".instance.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return dg.DagsterInstance.get()


def run(dates: list[str], run_config: dict | None = None) -> tuple[int, list[str]]:
    """Run the partitions oldest first; (exit code, notes of the last run)."""
    from dagster_project.definitions import defs

    job = defs().resolve_job_def("nightly")
    instance = instance_of_home()
    where = os.environ.get("DAGSTER_HOME")
    print(f"instance: {where if instance else 'ephemeral (DAGSTER_HOME not set)'}", flush=True)
    for line in repair_exports():
        print(line, flush=True)
    tags = {ALERTED_BY_TAG: "cli"}
    from dagster_project.defs.observability import dead_runs

    if instance is not None:
        tags.update(dead_runs.process_tags())
    timeout = wait_seconds()
    code, notes = EXIT_OK, []
    for d in dates:
        # each partition's run waits for its turn: no other run in flight (dead_runs.py)
        with (dead_runs.warehouse_turn(instance, timeout, lambda line: print(line, flush=True))
              if instance is not None else contextlib.nullcontext(True)) as turn:
            if not turn:
                line = (f"gave up after {timeout:.0f} s waiting for the warehouse, still held "
                        "by " + "; ".join(dead_runs.slot_holders(instance) or
                                          ["another `cli run`"])
                        + f": partition {d} not run. Let that run finish, or raise "
                          "DS_WAIT_FOR_WAREHOUSE_SECONDS")
                print(line, file=sys.stderr, flush=True)
                return EXIT_NOTHING_PUBLISHED, [line]
            print(f"== nightly partition {d}", flush=True)
            result = job.execute_in_process(partition_key=d, instance=instance,
                                            run_config=_quiet(run_config),
                                            raise_on_error=False, tags=tags)
        rc, line = outcome(result, d)
        notes = [line, *run_notes(result)]
        if rc != EXIT_OK:
            for failure in failure_report(result):
                print(failure, file=sys.stderr)
            alert(result, d, line)
        if len(dates) > 1 or rc:  # one partition's outcome heads the summary below
            print(notes[0], file=sys.stderr if rc else sys.stdout, flush=True)
        code = max(code, rc) if rc != EXIT_NOTHING_PUBLISHED else rc
        if rc == EXIT_NOTHING_PUBLISHED:
            break
    return code, notes


def _rows(con, sql: str, params: list) -> list[tuple]:
    """The query's rows, or none when its table (or column) is not built yet."""
    try:
        return con.execute(sql, params).fetchall()
    except (duckdb.CatalogException, duckdb.BinderException):
        return []


def first_lines(con, as_of: dt.date) -> list[str]:
    """What a reader must know first: the currency, absent sources and models, orphaned
    orders and quarantined rows, each with its reason."""
    from dagster_project.lib.currency import reporting_currency
    from dagster_project.lib.sources import absent_sources

    currency, why = reporting_currency(con, as_of)
    lines = [f"reporting currency: {currency} ({why})"]
    try:
        absent = absent_sources(con, as_of)
    except duckdb.CatalogException:
        absent = {}
    if absent:
        lines.append(f"absent sources ({len(absent)}): "
                     + ", ".join(absent) + f" (optional; no rows landed by {as_of}: the outputs "
                     "that need them say so)")
    lines += [f"absent model {target}: {reason}" for target, reason in _rows(
        con, "select target, absent_reason from segmentation.model_metrics "
             "where as_of_date = ? and status = 'absent' order by target", [as_of])]
    lines += [(f"model {target} not promoted ({reason}): " + (
                  f"the champion {version} scores" if promotion == "champion" else "absent"))
              for target, promotion, reason, version in _rows(
        con, "select target, promotion, promotion_reason, scoring_model_version "
             "from segmentation.model_metrics where as_of_date = ? and status = 'trained' "
             "and promotion <> 'promoted' order by target", [as_of])]
    lines += [f"kept out of the features: {n:,} rows ({reason}; marts.orphan_orders)"
              for reason, n in _rows(
        con, "select reason, count(*) from marts.orphan_orders where as_of_date = ? "
             "group by 1 order by 2 desc, 1", [as_of])]
    lines += [f"quarantined: {n:,} rows of {table} ({reason}; raw.quarantine)"
              for table, reason, n in _rows(
                  con, "select q.raw_table, q.reason, count(*) from raw.quarantine q "
                       "join raw.ingested_files f using (raw_table, file) where f.file_date <= ? "
                       "group by 1, 2 order by 3 desc, 1, 2 limit 5", [as_of])]
    return lines


def shown(path) -> str:
    """A path as a reader can open it from here: relative below the working directory,
    absolute elsewhere."""
    rel = os.path.relpath(path)
    # abspath, not resolve(): an export folder is a link to its run's folder, and the link is
    # what a reader should open
    return os.path.abspath(path) if rel.startswith("..") else rel


def published_runs(con, date: str) -> tuple[str | None, str | None]:
    """(the run that published `date`, or None; the latest published day, or None)."""
    row = _rows(con, "select arg_max(run_id, published_at) from published.publish_log "
                     "where as_of_date = ?", [dt.date.fromisoformat(date)])
    latest = _rows(con, "select cast(max(as_of_date) as varchar) from published.publish_log", [])
    return (row[0][0] if row else None), (latest[0][0] if latest else None)


def uploads(date: str) -> list[str]:
    """The partition's upload files, from its manifest: one line per audience."""
    manifest = settings.exports_dir() / date / "manifest.json"
    if not manifest.exists():
        return []
    entries = json.loads(manifest.read_text())["audiences"]
    lines = []
    for audience, e in sorted(entries.items()):
        if e.get("exported"):
            rows = max((f.get("rows", 0) for f in (e.get("files") or {}).values()), default=0)
            lines.append(f"    {audience:<36} {rows:>9,} rows")
        else:
            lines.append(f"    {audience:<36} {'not exported':>14}: {e.get('reason')}")
    return lines


def summary(date: str, notes: list[str] | None = None) -> bool:
    """Print what the warehouse holds for `date`; False when nothing was published for it."""
    db = settings.duckdb_path()
    for line in notes or []:
        print(line)
    print(f"\nwarehouse: {shown(db)}")
    if not db.exists():
        print("  (no warehouse yet)")
        return False
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as e:
        print(f"  (not readable now: {str(e).splitlines()[0]})")
        return True  # cannot tell; a run holds it
    try:
        run_id, latest = published_runs(con, date)
        if run_id is None:
            print(f"  nothing published for {date}"
                  + (f" (the latest published day is {latest})" if latest else
                     " (nothing published yet)")
                  + f": run `python -m dagster_project.cli run --date {date}`")
        for line in first_lines(con, dt.date.fromisoformat(date)):
            print(f"  {line}")
        for _, sql, label in SUMMARY_TABLES:
            try:
                value = con.execute(sql, {"d": dt.date.fromisoformat(date)}).fetchone()[0]
            except duckdb.CatalogException:
                value = "(not built)"
            print(f"  {label:<28} {value}")
        try:
            cols = {r[0] for r in con.execute("DESCRIBE segmentation.model_metrics").fetchall()}
            # warehouses written before the BG/NBD reference have no btyd_roc_auc column
            btyd = "round(btyd_roc_auc, 3)" if "btyd_roc_auc" in cols else "NULL"
            rows = con.execute(
                "SELECT target, status, round(model_roc_auc, 3), round(baseline_roc_auc, 3), "
                f"beats_baseline, {btyd} FROM segmentation.model_metrics WHERE as_of_date = ? "
                "ORDER BY target", [dt.date.fromisoformat(date)]).fetchall()
            if rows:
                print("  models (ROC AUC vs naive baseline; BG/NBD where it applies):")
                for t, status, auc, base, beats, bg in rows:
                    if status != "trained":
                        print(f"    {t:<20} {status} (reason above)")
                        continue
                    flag = "" if beats else "  <-- does not beat baseline"
                    ref = f", BG/NBD {bg}" if bg is not None else ""
                    print(f"    {t:<20} {status:<8} {auc} vs {base}{ref}{flag}")
        except duckdb.CatalogException:
            pass
    finally:
        con.close()
    if run_id is not None:
        files = uploads(date)
        if files:
            print(f"  upload files ({shown(settings.exports_dir() / date)}):")
            for line in files:
                print(line)
    for label, path in (("raw files", settings.raw_dir()), ("models", settings.models_dir()),
                        ("exports", settings.exports_dir()), ("reports", settings.reports_dir())):
        print(f"  {label:<28} {shown(path)}")
    report = settings.reports_dir() / date / "segment_report.html"
    if run_id is not None:
        print("\nnext:")
        if report.exists():
            print(f"  open the report      {shown(report)}")
        print(f"  upload the audiences {shown(settings.exports_dir() / date)}/<audience>/*.csv")
        print("  browse runs, assets and checks in the UI: make dev (http://127.0.0.1:3000)")
    return run_id is not None


def prune(keep_days: int, dry_run: bool) -> int:
    from dagster_project.lib import retention

    if keep_days < retention.MIN_KEEP_DAYS:
        print(f"error: --keep-days must be at least {retention.MIN_KEEP_DAYS}", file=sys.stderr)
        return 2
    db = settings.duckdb_path()
    if not db.exists():
        print(f"no warehouse at {os.path.relpath(db)}")
        return 0
    con = duckdb.connect(str(db))
    try:
        r = retention.prune(con, keep_days, settings.DBT_DIR / "dbt_project.yml", dry_run)
    finally:
        con.close()
    print(("dry run (nothing removed; --apply to do it): " if dry_run else "pruned: ")
          + r["summary"])
    for table, n in r["rows"].items():
        print(f"  {table:<36} {n:>12,} rows")
    for table in r["dropped_tables"]:
        print(f"  {table:<36} {'drop' if dry_run else 'dropped'}")
    mb = 1024 * 1024
    for when in ("before", "after"):
        size = r[f"size_{when}"]
        print(f"  file {when}: {size['used_bytes'] / mb:,.0f} MiB used, "
              f"{size['free_bytes'] / mb:,.0f} MiB free (reused before the file grows)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dagster_project.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the nightly job for one partition or a range")
    r.add_argument("--date", default="latest", help="YYYY-MM-DD or 'latest' (default)")
    r.add_argument("--end", default=None, help="last date of a range (inclusive)")
    r.add_argument("--config", default=None, metavar="YAML",
                   help="Dagster run config for the job (e.g. model hyperparameters)")
    s = sub.add_parser("summary", help="print what the warehouse holds for a partition")
    s.add_argument("--date", default="latest")
    pr = sub.add_parser("prune", help="drop what no later night reads from old partitions "
                        "(lib/retention.py); a dry run unless --apply")
    pr.add_argument("--keep-days", type=int, default=35,
                    help="keep the partitions of the last N days (default 35, at least 8)")
    pr.add_argument("--apply", action="store_true", help="carry it out (default: only show)")
    args = p.parse_args(argv)  # argparse exits with 2 on a bad command line
    if args.cmd == "prune":
        return prune(args.keep_days, dry_run=not args.apply)
    try:
        if args.cmd == "run":
            missing = missing_inputs()  # before anything else reads the folders
            if missing:
                raise UsageError(missing)
        date = latest_partition() if args.date == "latest" else args.date
        dates = _dates(date, args.end) if args.cmd == "run" else [_date(date, "--date").isoformat()]
        run_config = _run_config(args.config) if args.cmd == "run" else None
        if args.cmd == "run":
            wait_seconds()  # a malformed value is a usage error before anything runs
    except UsageError as e:
        p.print_usage(sys.stderr)
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    if args.cmd == "run":
        rc, notes = run(dates, run_config)
        summary(dates[-1], notes)
        return rc
    return 0 if summary(dates[0]) else 1


class ReaderSafe:
    """stdout/stderr that survive their reader going away (`cli summary | head`): the rest
    of the output is dropped, the command itself (a run) goes on and keeps its exit code,
    and no BrokenPipeError traceback is printed."""

    def __init__(self, stream):
        self._stream, self.gone = stream, False

    def _drop(self) -> None:
        self.gone = True
        with contextlib.suppress(OSError, ValueError):  # later writes, Python's last flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def __getattr__(self, name):
        return getattr(self._stream, name)


if __name__ == "__main__":
    sys.stdout, sys.stderr = ReaderSafe(sys.stdout), ReaderSafe(sys.stderr)
    raise SystemExit(main())
