"""dbt models as Dagster assets, one partition per run, vars built by a tested pure function."""

import datetime as dt

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets
from dagster_duckdb import DuckDBResource
from duckdb import Error as DuckDBError

from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.dbt.translator import ProjectTranslator
from dagster_project.defs.partitions import DUCKDB_POOL, daily_partitions, one_run_per_partition
from dagster_project.defs.observability.retry import retry_on_lock
from dagster_project.defs.resources import WarehouseLocked, warehouse
from dagster_project.lib.currency import reporting_currency
from dagster_project.lib.dbt_vars import dbt_state_dir, dbt_vars
from dagster_project.lib.warehouse import relation_row_counts


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=ProjectTranslator(),
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource):
    """Staging, intermediate and point-in-time feature marts for the partition's as_of_date."""
    as_of = context.partition_key
    with warehouse(duckdb) as con:  # closed before dbt opens the file
        currency, why = reporting_currency(con, dt.date.fromisoformat(as_of))
    context.log.info(f"reporting currency {currency}: {why}")
    # Unit tests are for development and CI (`make test` runs them), not for every night.
    args = ["build", "--vars", dbt_vars(as_of, reporting_currency=currency),
            "--exclude-resource-type", "unit_test"]
    invocation = dbt.cli(args, context=context, target_path=dbt_state_dir(duckdb.database))
    # dbt holds the warehouse's write lock until it exits, so the row counts are read after
    # the build: the events are collected (dbt's log still streams live) and yielded then.
    # dbt opens the file itself: a process that took the lock since is a step retry too
    with retry_on_lock(context):
        events = list(invocation.stream())
    yield from with_row_counts(events, invocation.manifest["nodes"], duckdb,
                               dt.date.fromisoformat(as_of), context.log)


def with_row_counts(events, nodes, duckdb: DuckDBResource, as_of: dt.date, log):
    """The events, each model's Output carrying ``dagster/row_count`` (rows in the relation)
    and, for tables keyed by as_of_date, ``rows_in_partition``. ``nodes``: the manifest's
    nodes, as the invocation already holds them. dagster-dbt's own ``fetch_row_counts``
    queries while dbt still holds DuckDB's lock, so it cannot be used."""
    relations = {}
    for ev in events:
        uid = _unique_id(ev)
        if uid in nodes and nodes[uid]["resource_type"] == "model":
            node = nodes[uid]
            relations[uid] = (node["schema"], node.get("alias") or node["name"])
    counts: dict = {}
    if relations:
        try:
            with warehouse(duckdb, retry_step=False) as con:
                counts = relation_row_counts(con, relations, as_of)
        except (DuckDBError, WarehouseLocked) as exc:  # metadata: never fail the build for it
            log.warning(f"row counts not read: {exc}")
    for ev in events:
        uid = _unique_id(ev)
        if uid in counts:
            c = counts[uid]
            extra = {"dagster/row_count": c["rows"]}
            if "rows_in_partition" in c:
                extra["rows_in_partition"] = c["rows_in_partition"]
            ev = ev.with_metadata({**ev.metadata, **extra})
        yield ev


def _unique_id(event) -> str | None:
    """The dbt unique_id of a model's Output event (None for other events)."""
    uid = event.metadata.get("unique_id") if isinstance(event, dg.Output) else None
    return getattr(uid, "value", uid)
