"""One daily partition per as_of_date (UTC). The last partition is the last complete day."""

import dagster as dg

from dagster_project import settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.partition_start(), timezone="UTC", end_offset=0
)

# One run per partition, also in backfills: a backfilled day then runs exactly what the
# nightly run would have run for it (dbt vars, training cutoffs, gate), and
# `context.partition_key` is always defined.
one_run_per_partition = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)

# Every asset that opens the DuckDB file takes a slot of this pool (limit 1 in dagster.yaml).
DUCKDB_POOL = "duckdb_warehouse"
