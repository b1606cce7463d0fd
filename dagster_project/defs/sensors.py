"""Run-failure alerts: every failed run leaves a record in <data>/alerts/alerts.jsonl and,
when DS_ALERT_WEBHOOK_URL is set, a JSON POST (Slack/Teams-style incoming webhook)."""

import dagster as dg

from dagster_project import settings
from dagster_project.lib.alerts import (
    ALERTED_BY_TAG,
    AlertRecord,
    deliver,
    root_error,
    run_failure_record,
    run_partition,
)


def alert_for(context: dg.RunFailureSensorContext) -> AlertRecord:
    """The alert record of the failed run in `context` (failed steps with their errors)."""
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        err = data.error if data is not None else None
        steps.append((event.step_key or "?", root_error(err) if err else event.message))
    return run_failure_record(
        run_id=run.run_id,
        job=run.job_name,
        partition=run_partition(run.tags),
        failed_steps=steps,
        run_message=context.failure_event.message if context.failure_event else None,
    )


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Writes an alert record for every failed run (and POSTs it to "
    "DS_ALERT_WEBHOOK_URL when set).",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    if context.dagster_run.tags.get(ALERTED_BY_TAG) == "cli":
        return  # `cli run` alerts for its own runs (one alert per failure, daemon up or not)
    record = alert_for(context)
    path, error = deliver(settings.data_dir() / "alerts", record)
    context.log.info(f"alert for run {record.run_id} written to {path}")
    if error:
        # Logged, never raised: the file record above is the alert of last resort.
        context.log.error(f"alert webhook failed: {error}")
