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

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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
    """Who holds the warehouse now: every run in flight (started, not ended), with the step
    that holds the pool's slot if one does, and its process. Also a slot held by a run this
    instance does not know."""
    steps: dict[str, list[str]] = {}
    out = []
    for slot in instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).claimed_slots:
        if instance.get_run_by_id(slot.run_id) is None:
            out.append(f"run {slot.run_id} (unknown to this instance), step {slot.step_key}")
        steps.setdefault(slot.run_id, []).append(slot.step_key)
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(LIVE))):
        proc = run_process(instance, run)
        where = f"pid {proc.pid}" + (f" on {proc.host}" if proc.host else "")
        step = (f"step {', '.join(steps[run.run_id])}" if run.run_id in steps
                else "between steps")
        out.append(f"run {run.run_id} ({run.job_name} "
                   f"{run.tags.get('dagster/partition', '')}, {run.status.value}), {step}, "
                   f"{where if proc.pid else 'process unknown'}")
    return out


def _turn_dir(instance: dg.DagsterInstance) -> str | None:
    """Where the instance's run turns are kept (DAGSTER_HOME), or None for an ephemeral one."""
    root = getattr(instance, "root_directory", None)
    return root if root and os.path.isdir(root) else None


def _try_lock(f) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _waiting_ahead(queue: str, mine: str) -> list[str]:
    """Processes of this host queued for a turn before ``mine`` (dead ones' tickets removed)."""
    ahead = []
    for name in sorted(os.listdir(queue)):
        if name >= mine:
            break
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and RunProcess(int(pid), None).alive() is False:
            with suppress(FileNotFoundError):
                os.remove(os.path.join(queue, name))
            continue
        ahead.append(f"`cli run` pid {pid}, waiting since "
                     f"{time.strftime('%H:%M:%S', time.localtime(int(name.split('-')[0]) / 1e9))}")
    return ahead


@contextmanager
def warehouse_turn(instance: dg.DagsterInstance, timeout_s: float,
                   say: Callable[[str], None], every_s: float = 5.0) -> Iterator[bool]:
    """Wait for this process's turn to run a partition: no run of the instance in flight
    (the daemon's, the UI's, another process's; dead ones are reaped on each look), no
    `cli run` of this host queued before it, and the instance's run-turn lock held (a file
    lock in DAGSTER_HOME, so two processes that look at the same moment do not both start).
    Yields True with the turn, held until the block ends; False when still waiting after
    `timeout_s`, having said who it waits for.

    Whole runs take turns, first come first served, not only their steps: steps of several
    runs interleaved through the pool's one slot left the slot idle between them (Dagster
    re-checks a blocked claim every 1 to 15 s; three 600-customer runs started together took
    over 4 minutes, about three times their time one after another), and a day's run saw
    another day's half-finished one. First come first served: a nightly started during a
    long backfill runs between two of its days, rather than after all of them."""
    root = _turn_dir(instance)
    if root is None:
        yield True
        return
    queue = os.path.join(root, ".run-turn.queue")
    os.makedirs(queue, exist_ok=True)
    ticket = f"{time.time_ns():020d}-{os.getpid()}"
    open(os.path.join(queue, ticket), "w").close()
    lock = open(os.path.join(root, ".run-turn.lock"), "a")  # noqa: SIM115 (held below)
    deadline = time.monotonic() + timeout_s
    told = None
    try:
        while True:
            for line in reap_dead_runs(instance):
                say(line)
            holders = _waiting_ahead(queue, ticket)
            if not holders:
                if _try_lock(lock):
                    holders = slot_holders(instance)
                    if not holders:
                        break
                    fcntl.flock(lock, fcntl.LOCK_UN)
                else:
                    holders = ["another `cli run`, starting its run"]
            if holders != told:
                say("waiting for the warehouse, held by " + "; ".join(holders)
                    + f" (giving up after {timeout_s:.0f} s: DS_WAIT_FOR_WAREHOUSE_SECONDS)")
                told = holders
            if time.monotonic() >= deadline:
                with suppress(FileNotFoundError):
                    os.remove(os.path.join(queue, ticket))
                yield False
                return
            time.sleep(min(every_s, max(0.0, deadline - time.monotonic())) or 0.01)
        with suppress(FileNotFoundError):
            os.remove(os.path.join(queue, ticket))  # the next in the queue is now first
        yield True
    finally:
        with suppress(FileNotFoundError):
            os.remove(os.path.join(queue, ticket))
        lock.close()  # releases the lock


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
