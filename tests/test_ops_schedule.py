"""The nightly schedule and the freshness policies, as configured from the environment."""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

import dagster as dg
import pytest


def _schedule_module(monkeypatch, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from dagster_project.defs import schedules

    return importlib.reload(schedules)


@pytest.fixture(autouse=True)
def _restore_schedules():
    yield
    from dagster_project.defs import schedules

    importlib.reload(schedules)


def _tick(schedule: dg.ScheduleDefinition, when: str) -> list[str]:
    from dagster_project.definitions import defs

    ctx = dg.build_schedule_context(scheduled_execution_time=dt.datetime.fromisoformat(when),
                                    repository_def=defs().get_repository_def())
    return [r.partition_key for r in schedule.evaluate_tick(ctx).run_requests]


def test_nightly_schedule_runs_the_utc_day_that_just_ended_by_default(monkeypatch):
    for k in ("DS_NIGHTLY_HOUR", "DS_NIGHTLY_MINUTE", "DS_NIGHTLY_TZ"):
        monkeypatch.delenv(k, raising=False)
    s = _schedule_module(monkeypatch).nightly_schedule
    assert (s.cron_schedule, s.execution_timezone) == ("0 2 * * *", "UTC")
    assert s.default_status == dg.DefaultScheduleStatus.RUNNING
    assert _tick(s, "2025-07-01T02:00:00+00:00") == ["2025-06-30"]


def test_nightly_schedule_time_and_timezone_come_from_the_environment(monkeypatch):
    s = _schedule_module(monkeypatch, DS_NIGHTLY_HOUR="1", DS_NIGHTLY_MINUTE="30",
                         DS_NIGHTLY_TZ="Asia/Tokyo").nightly_schedule
    assert (s.cron_schedule, s.execution_timezone) == ("30 1 * * *", "Asia/Tokyo")
    # 01:30 in Tokyo is 16:30 UTC the day before: the last UTC day ended is two days back
    assert _tick(s, "2025-07-01T01:30:00+09:00") == ["2025-06-29"]


def test_nightly_job_retries_runs_only_for_failures_outside_steps():
    from dagster_project.defs.schedules import nightly_job

    assert nightly_job.tags["dagster/max_retries"] == "1"
    assert nightly_job.tags["dagster/retry_on_asset_or_op_failure"] == "false"


@pytest.mark.parametrize("config", ["dagster.yaml", "dagster.postgres.yaml"])
def test_every_run_including_ui_backfills_gets_the_same_run_retry_policy(config, monkeypatch):
    """Backfills launched from the UI run as __ASSET_JOB, without the nightly job's tags: the
    instance's own policy must give them one retry for failures outside their steps."""
    import yaml
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for var in ("DS_PG_HOST", "DS_PG_PORT", "DS_PG_USER", "DS_PG_PASSWORD", "DS_PG_DB"):
        monkeypatch.setenv(var, "5432" if var.endswith("PORT") else "x")

    raw = yaml.safe_load((Path(__file__).parent.parent / "deploy" / config).read_text())
    result = process_config(dagster_instance_config_schema(), raw)
    assert result.success, result.errors
    retries = result.value["run_retries"]
    assert retries == {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}


def test_decision_segments_carries_a_freshness_policy_tied_to_the_schedule():
    from dagster_project.definitions import defs

    graph = defs().resolve_asset_graph()
    policy = graph.get(dg.AssetKey("decision_segments")).freshness_policy
    assert policy is not None and policy.deadline_cron == "0 6 * * *"
    assert graph.get(dg.AssetKey(["raw", "crm__orders"])).freshness_policy is None
    published = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "publish"]
    assert all(graph.get(k).freshness_policy is not None for k in published)
