"""The nightly schedule: the partition for the day that just ended, the whole graph in order."""

import os

import dagster as dg

from dagster_project.defs.partitions import daily_partitions

nightly_job = dg.define_asset_job(
    name="nightly",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Ingest, dbt, rules, propensity, segments, gate and publish for one as_of_date.",
)

nightly_schedule = dg.build_schedule_from_partitioned_job(
    nightly_job,
    hour_of_day=int(os.environ.get("DS_NIGHTLY_HOUR", "2")),
    minute_of_hour=int(os.environ.get("DS_NIGHTLY_MINUTE", "0")),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
