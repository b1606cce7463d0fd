"""Warehouse retention as a Dagster job: `prune_warehouse`, weekly (Sunday 12:00 UTC, away
from the nightly run), launchable from the UI with another keep_days or as a dry run.

What it removes and why it is safe: lib/retention.py. It takes the DuckDB pool's slot like
every step that opens the file, so it never runs while a nightly or backfill step writes.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from dagster_project import settings
from dagster_project.defs.partitions import DUCKDB_POOL
from dagster_project.defs.resources import warehouse
from dagster_project.lib import retention


class RetentionConfig(dg.Config):
    keep_days: int = retention.DEFAULT_KEEP_DAYS  # partitions of the last N days are kept
    dry_run: bool = False  # only count what would go


@dg.op(pool=DUCKDB_POOL, out=dg.Out(dg.Nothing))
def prune_old_partitions(context: dg.OpExecutionContext, config: RetentionConfig,
                         duckdb: DuckDBResource):
    """Drop what no later night reads from partitions older than keep_days (labels, old
    feature dates, segmentation partitions, audit and superseded published versions)."""
    with warehouse(duckdb) as con:
        r = retention.prune(con, config.keep_days, settings.DBT_DIR / "dbt_project.yml",
                            dry_run=config.dry_run)
    context.log.info(("dry run: " if config.dry_run else "pruned: ") + r["summary"])
    mib = 1024 * 1024
    context.add_output_metadata({
        "summary": r["summary"],
        "dry_run": r["dry_run"],
        "keep_days": r["keep_days"],
        "cut": str(r["cut"]),
        "feature_cut": str(r["feature_cut"]),
        "rows": dg.MetadataValue.json(r["rows"]),
        "dropped_tables": dg.MetadataValue.json(r["dropped_tables"]),
        "kept_versions_in_use": dg.MetadataValue.json(r["kept_versions_in_use"]),
        "used_mib_before": round(r["size_before"]["used_bytes"] / mib, 1),
        "used_mib_after": round(r["size_after"]["used_bytes"] / mib, 1),
        "free_mib_after": round(r["size_after"]["free_bytes"] / mib, 1),
    })


@dg.job(description="Drop old partitions' labels, feature dates, segmentation rows and audit "
                    "/ superseded published versions (lib/retention.py).")
def prune_warehouse():
    prune_old_partitions()


prune_warehouse_weekly = dg.ScheduleDefinition(
    name="prune_warehouse_weekly",
    job=prune_warehouse,
    cron_schedule="0 12 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"prune_warehouse every Sunday 12:00 UTC, keeping "
                f"{retention.DEFAULT_KEEP_DAYS} days of partitions.",
)
