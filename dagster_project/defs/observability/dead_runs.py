"""Runs whose process is gone, and who holds the warehouse.

A run killed with SIGKILL stays STARTED and keeps its slot of the ``duckdb_warehouse`` pool,
so every later step waits for it (docs: the pool serialises every step that opens the
warehouse file). The default run launcher cannot health-check its run workers, and run
monitoring only sees such a run at ``max_runtime_seconds``. Here the run's process is looked
up instead: its pid and host (tags ``ds/pid``/``ds/host`` that `cli run` sets, else the pid
in the run's own engine events — every run logs the process it executes in), and a run
whose process no longer exists on this host is marked failed and its slots freed.

`cli run` does that before it starts; the daemon's ``reap_dead_runs`` sensor does it every
minute. A run on another host is never judged from here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType

from dagster_project.defs.partitions import DUCKDB_POOL

PID_TAG, HOST_TAG = "ds/pid", "ds/host"
LIVE = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.CANCELING)


def process_tags() -> dict[str, str]:
    """Tags naming this process, for a run it executes in-process."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


@dataclass(frozen=True)
class RunProcess:
    pid: int | None
    host: str | None

    def alive(self) -> bool | None:
        """True/False when it can be told from this host, None when it cannot."""
        if self.pid is None or (self.host and self.host != socket.gethostname()):
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True


def run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunProcess:
    if run.tags.get(PID_TAG, "").isdigit():
        return RunProcess(int(run.tags[PID_TAG]), run.tags.get(HOST_TAG))
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT,
                                           limit=50).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "engine_event_data", None) if event else None
        pid = (data.metadata.get("pid") if data and data.metadata else None)
        value = getattr(pid, "value", pid)
        if value is not None and str(value).isdigit():
            return RunProcess(int(value), None)
    return RunProcess(None, None)


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark runs whose process is gone failed and free their pool slots; also free slots
    still held by runs that have ended. Returns one line per run."""
    lines = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(LIVE))):
        proc = run_process(instance, run)
        if proc.alive() is False:
            instance.report_run_failed(
                run, message=f"the run's process (pid {proc.pid}) is gone (killed?); marked "
                             "failed and its warehouse slot freed")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            lines.append(f"run {run.run_id} ({run.job_name} "
                         f"{run.tags.get('dagster/partition', '')}): its process (pid "
                         f"{proc.pid}) is gone; marked failed and its warehouse slot freed")
    info = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL)
    for slot in info.claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(slot.run_id)
            lines.append(f"run {slot.run_id} had ended but held the warehouse slot "
                         f"(step {slot.step_key}); freed")
    return lines


def slot_holders(instance: dg.DagsterInstance) -> list[str]:
    """Who holds the warehouse pool now: run, step, job, partition and process."""
    out = []
    for slot in instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        if run is None:
            out.append(f"run {slot.run_id} (unknown to this instance), step {slot.step_key}")
            continue
        proc = run_process(instance, run)
        where = f"pid {proc.pid}" + (f" on {proc.host}" if proc.host else "")
        out.append(f"run {run.run_id} ({run.job_name} "
                   f"{run.tags.get('dagster/partition', '')}, {run.status.value}), step "
                   f"{slot.step_key}, {where if proc.pid else 'process unknown'}")
    return out


def wait_for_warehouse(instance: dg.DagsterInstance, timeout_s: float,
                       say: Callable[[str], None], every_s: float = 5.0) -> bool:
    """Wait until no live run holds the warehouse pool, saying who holds it; False when it
    is still held after `timeout_s`. Dead holders are reaped on each look."""
    deadline = time.monotonic() + timeout_s
    told = None
    while True:
        for line in reap_dead_runs(instance):
            say(line)
        holders = slot_holders(instance)
        if not holders:
            return True
        if holders != told:
            say("waiting for the warehouse, held by " + "; ".join(holders)
                + f" (giving up after {timeout_s:.0f} s: DS_WAIT_FOR_WAREHOUSE_SECONDS)")
            told = holders
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(every_s, max(0.0, deadline - time.monotonic())) or 0.01)


@dg.sensor(
    name="reap_dead_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: runs whose process is gone (killed) are marked failed and "
    "their warehouse pool slot freed, so the next run is not blocked for hours.",
)
def reap_dead_runs_sensor(context: dg.SensorEvaluationContext):
    lines = reap_dead_runs(context.instance)
    for line in lines:
        context.log.warning(line)
    return dg.SkipReason("; ".join(lines) if lines else "no dead run holds the warehouse")
