"""dbt models as Dagster assets, one partition per run, vars built by a tested pure function."""


import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.dbt.translator import ProjectTranslator
from dagster_project.defs.partitions import DUCKDB_POOL, daily_partitions, one_run_per_partition
from dagster_project.lib.dbt_vars import dbt_vars


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=ProjectTranslator(),
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Staging, intermediate and point-in-time feature marts for the partition's as_of_date."""
    as_of = context.partition_key
    yield from dbt.cli(
        ["build", "--vars", dbt_vars(as_of)], context=context
    ).stream()
