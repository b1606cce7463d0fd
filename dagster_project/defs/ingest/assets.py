"""Ingest: landed source files -> DuckDB raw tables, one asset per source table."""


import datetime as dt

import dagster as dg
from dagster_duckdb import DuckDBResource

from dagster_project.defs.partitions import DUCKDB_POOL, daily_partitions, one_run_per_partition
from dagster_project.defs.resources import DataPaths, warehouse
from dagster_project.lib.contract import TABLES
from dagster_project.lib.ingest import ingest_partition

def raw_specs() -> list[dg.AssetSpec]:
    """One asset per contract table (built in a function: module-level specs would be
    loaded a second time as external assets)."""
    return [
    dg.AssetSpec(
        key=dg.AssetKey(["raw", t.raw_name]),
        description=f"{t.description} ({'optional' if t.optional else 'required'} source)",
        group_name="ingest",
        kinds={"duckdb", "csv"},
        skippable=False,
    )
    for t in TABLES
    ]


@dg.multi_asset(
    specs=raw_specs(),
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
    name="ingest_sources",
)
def ingest_sources(context: dg.AssetExecutionContext, duckdb: DuckDBResource, paths: DataPaths):
    """Load every source file landed by the partition date into raw tables; bad rows to quarantine."""
    as_of = dt.date.fromisoformat(context.partition_key)
    with warehouse(duckdb) as con:
        results = ingest_partition(con, paths.raw, as_of)
        quarantine_by_reason = con.execute(
            "select raw_table, reason, count(*) from raw.quarantine q "
            "join raw.ingested_files f using (raw_table, file) where f.file_date <= ? "
            "group by all order by 1, 2",
            [as_of],
        ).fetchall()
    for t in TABLES:
        r = results[t.raw_name]
        reasons = {
            reason.split(":")[0][:60]: n for tbl, reason, n in quarantine_by_reason if tbl == t.raw_name
        }
        if not r.present:
            context.log.warning(f"{t.raw_name}: optional source absent (no files landed by {as_of})")
        for file, cols in r.ignored_columns.items():
            context.log.warning(f"{file}: columns {cols} are not in the contract; ignored")
        for warning in r.warnings:
            context.log.warning(warning)
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(["raw", t.raw_name]),
            metadata={
                "present": r.present,
                "files_landed": r.files_total,
                "files_loaded_this_run": r.files_loaded,
                "rows_loaded_this_run": r.rows_loaded,
                "rows_quarantined_this_run": r.rows_quarantined,
                "rows_visible_at_partition": r.rows_in_table,
                "quarantine_by_reason": dg.MetadataValue.json(reasons),
                "ignored_columns_this_run": dg.MetadataValue.json(r.ignored_columns),
                "file_warnings_this_run": dg.MetadataValue.json(r.warnings),
            },
        )
