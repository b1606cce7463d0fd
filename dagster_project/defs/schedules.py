"""The nightly schedule: the partition for the day that just ended, the whole graph in order.

Time and timezone from DS_NIGHTLY_HOUR / DS_NIGHTLY_MINUTE / DS_NIGHTLY_TZ (default 02:00
UTC); partitions stay UTC days whatever the schedule's timezone: a tick runs the last UTC day
that has ended by then. The schedule is RUNNING by default: starting the daemon is enough.

Retries, in two layers (see lib/retry.py):
- step level: a DuckDB lock error (another process holds the file) that outlasts the
  connection's own retries raises RetryRequested with back-off, in every step (they all open
  the file through defs/resources.warehouse; the dbt step wraps its build); data errors (IngestError, a failed gate) are never retried.
- run level: `dagster/max_retries` re-launches a run once when it failed *outside* its steps
  (worker killed, run monitoring timed it out); `retry_on_asset_or_op_failure: false` keeps a
  run that failed on bad data from being re-run. Only the daemon applies run retries
  (headless `cli run` reports the failure and exits 1).
"""

import dagster as dg

from dagster_project.defs.observability.freshness import nightly_time
from dagster_project.defs.partitions import daily_partitions

nightly_job = dg.define_asset_job(
    name="nightly",
    selection=dg.AssetSelection.all(),
    description="Ingest, dbt, rules, propensity, segments, gate and publish for one as_of_date.",
    tags={
        "dagster/max_retries": "1",
        "dagster/retry_strategy": "FROM_FAILURE",
        "dagster/retry_on_asset_or_op_failure": "false",
    },
)


def nightly_schedule_def() -> dg.ScheduleDefinition:
    """Built from the environment at load time. A plain cron schedule (not
    build_schedule_from_partitioned_job, which refuses a timezone for a time-partitioned job)
    that asks the partitions for the last day ended by the tick."""
    hour, minute, tz = nightly_time()

    @dg.schedule(
        name="nightly_schedule",
        job=nightly_job,
        cron_schedule=f"{minute} {hour} * * *",
        execution_timezone=tz,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The nightly job for the UTC day that ended before the tick.",
    )
    def nightly_schedule(context: dg.ScheduleEvaluationContext):
        keys = daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        if not keys:
            return dg.SkipReason("no complete partition yet")
        key = keys[-1]
        return dg.RunRequest(run_key=key, partition_key=key)

    return nightly_schedule


nightly_schedule = nightly_schedule_def()
