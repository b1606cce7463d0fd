"""Warehouse retention: drop what no later night reads once its partition is old.

Each night adds per-customer rows that nothing removes: at 1,000,000 customers about 1 GB a
night (a feature date ~105 MB, the night's training labels ~80 MB for 16 million rows, the
segmentation partitions, and the scores and segments once more in the audit candidates and
again in the published version tables). `prune` removes, for partitions older than
``latest - keep_days`` (the cut):

* ``marts.customer_labels`` rows of those partitions (only their own night trained on them);
* ``marts.customer_features`` dates no kept partition reads: a partition P reads its
  training cutoffs P - step * k, k <= n_cutoffs, so dates before ``cut - step * n_cutoffs``;
* the per-customer partitions of ``segmentation.*`` (states, scores, segments, exclusions);
* the audit candidate tables ``audit.<name>__<yyyymmdd>__<run>`` of those dates (their
  records in audit.candidates / gate_results stay: the log of what was checked);
* superseded ``published.<name>__<yyyymmdd>__<run>`` version tables of those dates, never one
  a published view points at (``published.<name>_history`` holds the same rows per
  partition, and published.versions / publish_log keep the record).

Never touched: raw.* (the landed data), intermediate.* (rebuilt every night), the published
history and logs, measurement.*, the small per-partition tables (model metrics, rule
thresholds, the driver matrix). A pruned partition can still be re-run: dbt rebuilds its
missing feature dates and labels (a cold night), the models retrain deterministically.
keep_days is at least MIN_KEEP_DAYS: migration compares with the partition a week earlier and
the drift check with the last one published.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from .warehouse import table_exists

MIN_KEEP_DAYS = 8
DEFAULT_KEEP_DAYS = 35
PARTITIONED = ("segmentation.customer_states", "segmentation.propensity_scores",
               "segmentation.decision_segments", "segmentation.exclusion_audiences")
VERSION_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)__(?P<ymd>\d{8})__(?P<run>[0-9a-z]+)$")


@dataclass
class RetentionPlan:
    latest: dt.date | None
    cut: dt.date | None  # partitions before this day are pruned
    feature_cut: dt.date | None  # feature dates before this day are deleted
    deletes: dict[str, int] = field(default_factory=dict)  # table -> rows to delete
    drops: list[str] = field(default_factory=list)  # schema.table to drop
    kept_versions: list[str] = field(default_factory=list)  # old, but a view points at it

    def cut_for(self, table: str) -> dt.date | None:
        """Rows of `table` with an as_of_date before this day go."""
        return self.feature_cut if table == "marts.customer_features" else self.cut

    @property
    def empty(self) -> bool:
        return not self.drops and not any(self.deletes.values())

    def summary(self) -> str:
        if self.latest is None:
            return "nothing to prune: no partition has been built"
        rows = sum(self.deletes.values())
        return (f"partitions before {self.cut} (latest {self.latest}): {rows:,} rows to delete "
                f"in {sum(1 for n in self.deletes.values() if n)} tables, "
                f"{len(self.drops)} version tables to drop")


def _count_before(con, table: str, column: str, day: dt.date) -> int:
    schema, name = table.split(".")
    if not table_exists(con, schema, name):
        return 0
    return int(con.execute(f"select count(*) from {table} where {column} < ?",
                           [day]).fetchone()[0])


def _view_targets(con) -> set[str]:
    """Version tables a published view selects from."""
    sql = con.execute("select sql from duckdb_views() where schema_name = 'published' "
                      "and not internal").fetchall()
    return {m for (text,) in sql for m in re.findall(r"published\.(\w+__\d{8}__\w+)", text)}


def latest_partition(con) -> dt.date | None:
    """The newest partition the segments were built for (else the newest feature date)."""
    for table, column in (("segmentation.decision_segments", "as_of_date"),
                          ("marts.customer_features", "as_of_date")):
        schema, name = table.split(".")
        if table_exists(con, schema, name):
            d = con.execute(f"select max({column}) from {table}").fetchone()[0]
            if d is not None:
                return d
    return None


def plan(con, keep_days: int = DEFAULT_KEEP_DAYS, cutoff_step_days: int = 7,
         n_cutoffs: int = 18, latest: dt.date | None = None) -> RetentionPlan:
    """What `apply` would remove, counted, without changing anything."""
    if keep_days < MIN_KEEP_DAYS:
        raise ValueError(f"keep_days must be at least {MIN_KEEP_DAYS} (migration reads the "
                         f"partition a week earlier), got {keep_days}")
    latest = latest or latest_partition(con)
    if latest is None:
        return RetentionPlan(None, None, None)
    cut = latest - dt.timedelta(days=keep_days)
    feature_cut = cut - dt.timedelta(days=cutoff_step_days * n_cutoffs)
    p = RetentionPlan(latest, cut, feature_cut)
    for table in ("marts.customer_labels", "marts.customer_features", *PARTITIONED):
        p.deletes[table] = _count_before(con, table, "as_of_date", p.cut_for(table))
    targets = _view_targets(con)
    tables = con.execute("select schema_name, table_name from duckdb_tables() "
                         "where schema_name in ('audit', 'published') "
                         "order by 1, 2").fetchall()
    for schema, name in tables:
        m = VERSION_RE.match(name)
        if not m:
            continue
        day = dt.datetime.strptime(m.group("ymd"), "%Y%m%d").date()
        if day >= cut:
            continue
        if schema == "published" and name in targets:
            p.kept_versions.append(f"{schema}.{name}")
        else:
            p.drops.append(f"{schema}.{name}")
    return p


def apply(con, p: RetentionPlan) -> dict[str, int]:
    """Carry out a plan in one transaction, then checkpoint so the freed blocks are reused.
    Returns the rows deleted per table (read back: none left before the cut)."""
    if p.empty:
        return {}
    done: dict[str, int] = {}
    con.execute("begin transaction")
    try:
        for table, n in p.deletes.items():
            if not n:
                continue
            con.execute(f"delete from {table} where as_of_date < ?", [p.cut_for(table)])
            done[table] = n
        for table in p.drops:
            con.execute(f"drop table {table}")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    # a failed statement can make COMMIT roll back silently (PITFALLS.md): read back
    left = {t: _count_before(con, t, "as_of_date", p.cut_for(t)) for t in done}
    still = [t for t in p.drops if table_exists(con, *t.split("."))]
    if any(left.values()) or still:
        raise RuntimeError(f"retention did not hold: rows left {left}, tables left {still}")
    con.execute("checkpoint")
    return done


def database_size(con) -> dict[str, int]:
    """Used and free blocks of the database file, in bytes (pragma_database_size)."""
    row = con.execute("select block_size, used_blocks, free_blocks from pragma_database_size() "
                      "where database_name = current_database()").fetchone()
    return {"used_bytes": int(row[0] * row[1]), "free_bytes": int(row[0] * row[2])}


def cutoff_vars(dbt_project_yml) -> tuple[int, int]:
    """(cutoff_step_days, the largest k) from dbt_project.yml's vars: the grid of feature
    dates a partition reads (macros/as_of.sql, feature_dates), defined once, in dbt: the
    oldest date it reads is ``P - step * max(n_cutoffs, long_cutoffs)``."""
    import yaml

    with open(dbt_project_yml) as f:
        v = yaml.safe_load(f)["vars"]
    return int(v["cutoff_step_days"]), max(int(v["n_cutoffs"]), int(v.get("long_cutoffs", 0)))


def prune(con, keep_days: int, dbt_project_yml, dry_run: bool = False) -> dict:
    """Plan and (unless dry_run) apply; what was (or would be) removed and the file's use."""
    step, n = cutoff_vars(dbt_project_yml)
    before = database_size(con)
    p = plan(con, keep_days, step, n)
    done = {} if dry_run else apply(con, p)
    return {
        "summary": p.summary(), "dry_run": dry_run, "keep_days": keep_days,
        "latest": p.latest, "cut": p.cut, "feature_cut": p.feature_cut,
        "rows": {t: n for t, n in (p.deletes if dry_run else done).items() if n},
        "dropped_tables": p.drops, "kept_versions_in_use": p.kept_versions,
        "size_before": before, "size_after": database_size(con),
    }
