"""Alarms for operators: source freshness, run-failure records, retry classification, drift."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import http.server
import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource  # module level: the test asset's annotation

from dagster_project.lib import alerts, drift
from dagster_project.lib.ingest import IngestError
from dagster_project.lib.retry import is_transient, lock_backoff_seconds

from .helpers import END, make_dataset

LOCK_ERROR = ('IO Error: Could not set lock on file "/x/warehouse.duckdb": Conflicting lock is '
              "held in /usr/bin/python3 (PID 123). See also https://duckdb.org/docs/concurrency")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A tiny dataset ending on END (sources land daily files)."""
    return make_dataset(tmp_path_factory.mktemp("alerts"), customers=200, seed=5)


def _drop_days(raw: Path, source: str, table: str, days: list[dt.date]) -> None:
    for d in days:
        (raw / source / table / f"{d.isoformat()}.csv").unlink(missing_ok=True)


# ---------------------------------------------------------------- freshness
def test_a_source_missing_for_the_day_raises_the_freshness_alarm(small, tmp_path):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small / "raw", raw)
    folder = raw / "web" / "events"
    assert alerts.source_freshness(folder, "web__events", END, optional=True).status == "fresh"
    _drop_days(raw, "web", "events", [END])
    late = alerts.source_freshness(folder, "web__events", END, optional=True)
    assert late.status == "late" and late.lag_days == 1
    assert str(END) in late.reason


def test_a_required_source_silent_beyond_its_tolerance_is_stale():
    # a folder whose newest file is 5 days old; orders tolerate 3
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        (folder / f"{(END - dt.timedelta(days=5)).isoformat()}.csv").write_text("x\n")
        (folder / f"{(END + dt.timedelta(days=1)).isoformat()}.csv").write_text("x\n")  # future
        f = alerts.source_freshness(folder, "crm__orders", END, optional=False)
        assert f.status == "stale" and f.lag_days == 5
        assert alerts.source_freshness(Path(d) / "none", "crm__orders", END, False).status == "stale"
        assert alerts.source_freshness(Path(d) / "none", "web__events", END, True).status == "absent"


def _files(folder: Path, days: list[dt.date]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for d in days:
        (folder / f"{d.isoformat()}.csv").write_text("x\n")
    return folder


def test_a_closed_cohorts_customer_master_is_a_delta_not_stale_while_orders_name_known_customers(
        tmp_path):
    # every customer acquired in one quarter: the last customers file is 189 days old
    folder = _files(tmp_path / "customers", [END - dt.timedelta(days=189 + i) for i in range(60)])
    known = alerts.source_freshness(folder, "crm__customers", END, optional=False,
                                    unknown_reference=(1200, 0))
    assert known.status == "fresh" and known.landing == "delta"
    assert "189 days" in known.reason and "known customers" in known.reason
    # orders that name customers in no customers file: new customers are missing
    missing = alerts.source_freshness(folder, "crm__customers", END, optional=False,
                                      unknown_reference=(1200, 300))
    assert missing.status == "stale"
    assert "300 of the 1,200 orders" in missing.reason and "25%" in missing.reason


def test_a_feed_is_judged_by_its_own_landing_rhythm_and_the_tolerance_is_configurable(
        tmp_path, monkeypatch):
    weekly = _files(tmp_path / "rates", [END - dt.timedelta(days=7 * i + 5) for i in range(12)])
    f = alerts.source_freshness(weekly, "fx__rates", END, optional=True)
    assert f.status == "late" and f.max_lag_days == 8 and f.configured_max_lag_days == 3
    assert "widened" in f.reason
    daily = _files(tmp_path / "orders", [END - dt.timedelta(days=i + 5) for i in range(60)])
    assert alerts.source_freshness(daily, "crm__orders", END, optional=False).status == "stale"
    monkeypatch.setenv("DS_FRESHNESS_MAX_LAG_DAYS", "crm__orders=7, web__events=1")
    relaxed = alerts.source_freshness(daily, "crm__orders", END, optional=False)
    assert relaxed.status == "late" and relaxed.max_lag_days == 7
    monkeypatch.setenv("DS_FRESHNESS_MAX_LAG_DAYS", "crm__orders=seven")
    with pytest.raises(ValueError, match="DS_FRESHNESS_MAX_LAG_DAYS"):
        alerts.source_freshness(daily, "crm__orders", END, optional=False)


def test_freshness_check_warns_for_a_late_optional_source_and_blocks_on_a_stale_required_one(
        small, tmp_path):
    import shutil

    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from dagster_project.defs.ingest.assets import ingest_sources
    from dagster_project.defs.observability.checks import raw_source_freshness
    from dagster_project.defs.resources import DataPaths

    raw = tmp_path / "raw"
    shutil.copytree(small / "raw", raw)
    _drop_days(raw, "web", "events", [END])  # optional, 1 day late -> WARN
    # required: orders silent for 4 days (> 3 tolerated) -> ERROR, blocking
    _drop_days(raw, "crm", "orders", [END - dt.timedelta(days=i) for i in range(4)])
    result = dg.materialize(
        [ingest_sources, raw_source_freshness], partition_key=END.isoformat(),
        resources={"duckdb": DuckDBResource(database=str(tmp_path / "w.duckdb")),
                   "paths": DataPaths(data_dir=str(tmp_path))},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    evals = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert evals["web__events"].passed is False
    assert evals["web__events"].severity == dg.AssetCheckSeverity.WARN
    assert evals["crm__orders"].passed is False
    assert evals["crm__orders"].severity == dg.AssetCheckSeverity.ERROR
    assert evals["crm__customers"].severity == dg.AssetCheckSeverity.WARN or evals[
        "crm__customers"].passed
    specs = {s.asset_key.path[-1]: s for s in raw_source_freshness.check_specs}
    assert specs["crm__orders"].blocking and not specs["web__events"].blocking
    # blocking + ERROR: the check step fails, so nothing downstream would run
    assert not result.success


# ---------------------------------------------------------------- failure alerts
class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()


def test_a_failing_run_produces_an_alert_record_and_a_webhook_post(
        small, tmp_path, monkeypatch, webhook):
    import shutil

    import dagster as dg

    raw = tmp_path / "raw"
    shutil.copytree(small / "raw", raw)
    # a required column missing from the newest orders file -> IngestError in ingest_sources
    # (the newest, not END's: 200 customers do not buy every day)
    path = sorted((raw / "crm" / "orders").glob("*.csv"))[-1]
    assert path.stem <= END.isoformat()
    rows = list(csv.reader(path.open()))
    rows[0] = ["order_date" if c == "ordered_at" else c for c in rows[0]]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    url, received = webhook
    monkeypatch.setenv("DS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DS_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("DS_ALERT_WEBHOOK_URL", url)

    from dagster_project.definitions import defs
    from dagster_project.defs.sensors import alert_on_run_failure

    instance = dg.DagsterInstance.ephemeral()
    result = defs().resolve_job_def("nightly").execute_in_process(
        partition_key=END.isoformat(), instance=instance, raise_on_error=False)
    assert not result.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure", dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run).for_run_failure()
    alert_on_run_failure(ctx)

    records = alerts.read_alerts(tmp_path / "alerts")
    assert len(records) == 1
    rec = records[0]
    assert rec["run_id"] == result.run_id and rec["job"] == "nightly"
    assert rec["partition"] == END.isoformat()
    assert [s["step_key"] for s in rec["failed_steps"]] == ["ingest_sources"]
    assert "ordered_at" in rec["failed_steps"][0]["error"]
    assert "ordered_at" in rec["message"]
    assert received and received[0]["run_id"] == result.run_id and "text" in received[0]

    # an unreachable webhook is logged, never raised; the record is still written
    monkeypatch.setenv("DS_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens-here")
    alert_on_run_failure(ctx)
    assert len(alerts.read_alerts(tmp_path / "alerts")) == 2

    # a `cli run` alerts for its own runs: the daemon's sensor does not alert them twice
    tagged = defs().resolve_job_def("nightly").execute_in_process(
        partition_key=END.isoformat(), instance=instance, raise_on_error=False,
        tags={alerts.ALERTED_BY_TAG: "cli"})
    assert not tagged.success
    alert_on_run_failure(dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure", dagster_event=tagged.get_run_failure_event(),
        dagster_instance=instance, dagster_run=tagged.dagster_run).for_run_failure())
    assert len(alerts.read_alerts(tmp_path / "alerts")) == 2


def test_alert_records_are_appended_one_json_line_each(tmp_path):
    for i in range(3):
        alerts.append_alert(tmp_path, alerts.run_failure_record(
            f"r{i}", "nightly", "2025-06-30", [("s", f"boom {i}\ndetails")], None))
    lines = (tmp_path / alerts.ALERTS_FILE).read_text().splitlines()
    assert [json.loads(x)["run_id"] for x in lines] == ["r0", "r1", "r2"]
    assert json.loads(lines[0])["message"] == "s: boom 0"


def test_a_run_failing_outside_any_step_is_alerted_with_the_run_message():
    rec = alerts.run_failure_record("r", "nightly", None, [], "Exceeded maximum runtime")
    assert rec.message == "Exceeded maximum runtime" and rec.failed_steps == []


def test_webhook_errors_are_returned_not_raised():
    assert alerts.post_webhook("http://127.0.0.1:9/x", {"a": 1}, timeout=2) is not None
    assert alerts.post_webhook("not a url", {"a": 1}) is not None


# ---------------------------------------------------------------- retries
def test_duckdb_lock_error_is_transient_and_data_errors_are_not(tmp_path):
    assert is_transient(LOCK_ERROR)
    assert is_transient(duckdb.IOException(LOCK_ERROR))
    assert not is_transient(IngestError("crm/orders/2025-06-30.csv: required column missing"))
    assert not is_transient(ValueError("quality gate failed: 3 expectations"))
    assert not is_transient(duckdb.IOException("IO Error: No files found that match the pattern"))
    try:  # wrapped: a lock error that caused another exception is still transient
        try:
            raise duckdb.IOException(LOCK_ERROR)
        except duckdb.IOException as e:
            raise RuntimeError("dbt build failed") from e
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert [lock_backoff_seconds(i) for i in range(3)] == [15, 30, 60]


@contextlib.contextmanager
def _second_process_holding(db):
    """Another process with `db` open for writing (table t created), until the block ends
    (or it is killed); yields the process."""
    import subprocess
    import sys

    script = (f"import duckdb, time; c = duckdb.connect(r'{db}'); "
              "c.execute('create table t(x int)'); print('ready', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_real_second_process_lock_is_classified_transient(tmp_path):
    with _second_process_holding(tmp_path / "w.duckdb"):
        with pytest.raises(duckdb.Error) as info:
            duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
        assert is_transient(info.value)


def _short_connection_retries(monkeypatch) -> list:
    """DuckDBResource's ten connection retries, without their waits; returns the delays it
    would have waited, as they are asked for."""
    from dagster._utils import backoff

    delays = []

    def fast(base_delay=0.1, backoff_factor=2.0):
        while True:
            delays.append(base_delay)
            yield 0.001

    monkeypatch.setattr(backoff, "exponential_delay_generator", fast)
    return delays


def test_an_outside_process_holding_the_warehouse_gives_a_clear_lock_error(tmp_path,
                                                                          monkeypatch):
    """After the connection's bounded retries (about 100 s, made short here), a step fails
    with an error naming the file and the process that holds it, not DuckDB's IO error
    alone; the run's failure then alerts (test above)."""
    from dagster_duckdb import DuckDBResource

    from dagster_project.defs.resources import WarehouseLocked, warehouse

    delays = _short_connection_retries(monkeypatch)
    db = tmp_path / "w.duckdb"
    with _second_process_holding(db) as holder:
        pid = holder.pid
        with pytest.raises(WarehouseLocked) as info:
            with warehouse(DuckDBResource(database=str(db))):
                pass
    msg = str(info.value)
    assert str(db) in msg and f"PID {pid}" in msg and "close that process" in msg
    assert len(delays) == 10  # bounded: ten retries, then the error
    assert is_transient(info.value)  # the checks' step retry still sees the lock
    with warehouse(DuckDBResource(database=str(db))) as con:  # free again: it opens
        assert con.execute("select count(*) from t").fetchone() == (0,)


def _reads_the_warehouse():
    """A step that opens the warehouse as every step of the project does."""
    import dagster as dg

    from dagster_project.defs.resources import warehouse

    @dg.asset
    def reads_the_warehouse(duckdb: DuckDBResource) -> int:
        with warehouse(duckdb) as con:
            return con.execute("select count(*) from t").fetchone()[0]

    return reads_the_warehouse


def test_a_step_whose_warehouse_stays_locked_is_retried_as_a_step(tmp_path, monkeypatch):
    """Past the connection's own retries, a lock retries the whole step (15/30/60 s, made
    short here): the outside process is gone by the second try, which runs."""
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from dagster_project.defs.observability import retry

    _short_connection_retries(monkeypatch)
    db = tmp_path / "w.duckdb"
    asked = []
    with _second_process_holding(db) as holder:
        def wait_after_releasing(retry_number):  # the holder goes away while the step waits
            asked.append(retry_number)
            holder.kill()
            holder.wait()
            return 0.01

        monkeypatch.setattr(retry, "lock_backoff_seconds", wait_after_releasing)
        result = dg.materialize([_reads_the_warehouse()],
                                resources={"duckdb": DuckDBResource(database=str(db))})
    assert result.success and result.output_for_node("reads_the_warehouse") == 0
    assert asked == [0]
    kinds = [e.event_type_value for e in result.all_events]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds.count("STEP_RESTARTED") == 1


def test_a_lock_that_outlasts_every_step_retry_fails_the_step_naming_the_holder(
        tmp_path, monkeypatch):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from dagster_project.defs.observability import retry

    _short_connection_retries(monkeypatch)
    monkeypatch.setattr(retry, "lock_backoff_seconds", lambda n: 0.01)
    db = tmp_path / "w.duckdb"
    with _second_process_holding(db) as holder:
        result = dg.materialize([_reads_the_warehouse()], raise_on_error=False,
                                resources={"duckdb": DuckDBResource(database=str(db))})
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert kinds.count("STEP_UP_FOR_RETRY") == 3  # then it gives up
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.error.to_string())
    assert f"PID {holder.pid}" in text and "close that process" in text


def test_every_step_opens_the_warehouse_through_the_retrying_connection():
    """The rule above holds for every step because no step opens the file another way: no
    module under defs/ calls get_connection() or duckdb.connect() but resources.py."""
    import re

    from dagster_project import settings

    defs = settings.PROJECT_ROOT / "dagster_project" / "defs"
    found = [f"{p.relative_to(defs)}:{n}" for p in defs.rglob("*.py")
             if p.name != "resources.py" or p.parent != defs
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"get_connection\(|duckdb\.connect\(", line)]
    assert found == []
    assert "with warehouse(duckdb) as con:" in (defs / "publish" / "assets.py").read_text()


def test_dbts_own_lock_error_retries_the_dbt_step(tmp_path):
    """dbt opens the file itself; the same lock seen by a real dbt invocation is a step retry
    (the dbt asset wraps its build in retry_on_lock)."""
    import dagster as dg
    from dagster_dbt import DbtCliResource

    from dagster_project import settings
    from dagster_project.defs.dbt.project import dbt_executable
    from dagster_project.defs.observability.retry import retry_on_lock

    db = tmp_path / "w.duckdb"
    dbt = DbtCliResource(project_dir=str(settings.DBT_DIR), profiles_dir=str(settings.DBT_DIR),
                         dbt_executable=dbt_executable())
    ctx = SimpleNamespace(retry_number=0, log=logging.getLogger("test"))
    with _second_process_holding(db), pytest.MonkeyPatch.context() as mp:
        mp.setenv("DS_DUCKDB_PATH", str(db))
        invocation = dbt.cli(["run", "--select", "stg_crm__customers"],
                             target_path=tmp_path / "target")
        with pytest.raises(dg.RetryRequested) as info, retry_on_lock(ctx):
            list(invocation.stream())
    assert info.value.seconds_to_wait == 15
    assert "Conflicting lock" in str(info.value.__cause__)


def test_retry_on_lock_requests_a_retry_only_for_lock_errors():
    import dagster as dg

    from dagster_project.defs.observability.retry import retry_on_lock

    ctx = SimpleNamespace(retry_number=1, log=logging.getLogger("test"))
    with pytest.raises(dg.RetryRequested) as info, retry_on_lock(ctx):
        raise duckdb.IOException(LOCK_ERROR)
    assert info.value.seconds_to_wait == 30 and info.value.max_retries >= 1
    with pytest.raises(IngestError), retry_on_lock(ctx):
        raise IngestError("bad file")


# ---------------------------------------------------------------- drift
def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    base = rng.beta(2, 5, 5000)
    assert drift.psi(base, base) == pytest.approx(0.0, abs=1e-9)
    assert drift.psi(base, rng.beta(2, 5, 5000)) < 0.1
    moderate = drift.psi(base, np.clip(base + 0.06, 0, 1))
    major = drift.psi(base, rng.beta(5, 2, 5000))
    assert 0.1 < moderate < major and major > 0.25
    assert drift.verdict(moderate) in ("warn", "fail") and drift.verdict(major) == "fail"
    assert drift.psi([0.5] * 100, [0.5] * 100) == pytest.approx(0.0)  # constant: no crash
    with pytest.raises(ValueError):
        drift.psi([], [0.1])


def test_fixed_probability_bins_do_not_read_a_retrained_models_new_steps_as_drift():
    """Two days of calibrated scores: the same underlying probabilities, but each day's
    isotonic calibration rounds them to its own few dozen step values. Quantile bins collapse
    on the ties and report a shift; ten fixed bins on [0, 1] do not. A real shift still
    fails with fixed bins."""
    rng = np.random.default_rng(1)
    p = rng.beta(1.2, 6, 20000)

    def steps(values, seed):
        knots = np.sort(np.random.default_rng(seed).uniform(0, 1, 30))
        return knots[np.clip(np.searchsorted(knots, values), 0, len(knots) - 1)]

    day1, day2 = steps(p, 2), steps(p, 3)
    assert len(np.unique(day1)) <= 30
    assert drift.psi(day1, day2) > drift.FAIL_PSI  # quantile bins: a false alarm
    assert drift.psi(day1, day2, edges=drift.PROBABILITY_EDGES) < drift.WARN_PSI
    shifted = steps(rng.beta(3, 4, 20000), 3)
    assert drift.psi(day1, shifted, edges=drift.PROBABILITY_EDGES) > drift.FAIL_PSI


def test_drift_compares_with_the_last_published_day_before_the_partition(tmp_path):
    from dagster_project.defs.observability.checks import compute_drift
    from dagster_project.lib.features import LABELS

    rng = np.random.default_rng(1)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema segmentation")
    cols = ", ".join(f"{t}_score double" for t in LABELS)
    con.execute(f"create table segmentation.propensity_scores (as_of_date date, customer_id "
                f"varchar, {cols})")
    days = {dt.date(2025, 6, 27): (2, 5), dt.date(2025, 6, 28): (5, 2),
            dt.date(2025, 6, 29): (5, 2), dt.date(2025, 6, 30): (2, 5)}
    for d, (a, b) in days.items():
        import pandas as pd

        values = rng.beta(a, b, 2000)
        frame = pd.DataFrame({"as_of_date": d, "customer_id": [f"c{i}" for i in range(2000)],
                              **{f"{t}_score": values for t in LABELS}})
        con.register("frame", frame)
        con.execute("insert into segmentation.propensity_scores select * from frame")
        con.unregister("frame")
    # nothing published: the previous scored day (06-29, shifted) -> fail
    ref, values = compute_drift(con, dt.date(2025, 6, 30))
    assert ref == dt.date(2025, 6, 29) and all(v > 0.25 for v in values.values())
    # 06-27 was the last day published: it is the reference (similar distribution) -> ok
    con.execute("create schema published")
    con.execute("create table published.versions (name varchar, as_of_date date)")
    con.execute("insert into published.versions values ('scores', '2025-06-27')")
    ref, values = compute_drift(con, dt.date(2025, 6, 30))
    assert ref == dt.date(2025, 6, 27) and all(v < 0.1 for v in values.values())
    assert compute_drift(con, dt.date(2025, 6, 27)) == (None, {})
    con.close()


def test_the_alert_names_the_partition_of_a_backfill_run_too():
    """Runs of an asset backfill (UI: Materialize -> a date range) carry no dagster/partition
    tag, only the range they cover; the alert named no partition for them."""
    assert alerts.run_partition({"dagster/partition": "2025-06-30"}) == "2025-06-30"
    assert alerts.run_partition({"dagster/asset_partition_range_start": "2025-06-29",
                                 "dagster/asset_partition_range_end": "2025-06-29",
                                 "dagster/backfill": "abcdefgh"}) == "2025-06-29"
    assert alerts.run_partition({"dagster/asset_partition_range_start": "2025-06-01",
                                 "dagster/asset_partition_range_end": "2025-06-07"}
                                ) == "2025-06-01...2025-06-07"
    assert alerts.run_partition({}) is None


def test_population_drift_rescores_the_reference_day_with_the_partitions_model(tmp_path):
    """The stored scores of two days differ because each night refits its model (here the
    reference day's stored scores are simply other numbers): the stored-score PSI fails.
    Re-scored by the partition's model, the same customers' features give the same
    distribution (PSI ~0); when a feature feeding the model shifts, the PSI fails."""
    from dagster_project.defs.observability.checks import compute_drift, population_drift
    from dagster_project.lib import propensity as pm
    from dagster_project.lib.features import FEATURE_COLUMNS, LABELS

    from .test_propensity import CONFIG, FEATURE_COLS, TARGET, make_frame

    training = make_frame(n_customers=2000)
    model = pm.train_target(training, TARGET, FEATURE_COLS, CONFIG)
    ref_day, day = dt.date(2025, 6, 29), dt.date(2025, 6, 30)
    pm.save_model(model, tmp_path / "models" / TARGET / day.isoformat())
    people = training.loc[training["cutoff_date"] == training["cutoff_date"].max()]

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema marts")
    con.execute("create schema segmentation")

    def features(d, frame):
        out = pd.DataFrame({"as_of_date": d, "customer_id": frame["customer_id"]})
        for c in FEATURE_COLUMNS:
            out[c] = frame[c].to_numpy() if c in frame else 0.0
        return out

    def store(table, frame):
        con.register("frame", frame)
        con.execute(f"create table if not exists {table} as select * from frame limit 0")
        con.execute(f"insert into {table} by name select * from frame")
        con.unregister("frame")

    store("marts.customer_features", features(ref_day, people))
    store("marts.customer_features", features(day, people))
    today = pm.score(model, people)["score"].to_numpy()
    rng = np.random.default_rng(3)
    for d, values in ((ref_day, rng.beta(8, 2, len(people))), (day, today)):
        store("segmentation.propensity_scores", pd.DataFrame(
            {"as_of_date": d, "customer_id": people["customer_id"].to_numpy(),
             **{f"{t}_score": (values if t == TARGET else np.nan) for t in LABELS}}))

    ref, stored = compute_drift(con, day)
    assert ref == ref_day and stored[TARGET] > drift.FAIL_PSI
    population = population_drift(con, day, ref, tmp_path / "models")
    assert population[TARGET] < 0.01
    assert all(population[t] is None for t in LABELS if t != TARGET)  # no model on disk

    # the reference day's customers had far more sessions: their scores were higher
    con.execute("update marts.customer_features set sessions_30d = sessions_30d + 3 "
                "where as_of_date = ?", [ref_day])
    assert population_drift(con, day, ref, tmp_path / "models")[TARGET] > drift.FAIL_PSI
    con.close()


def test_a_webhook_url_is_never_logged_with_its_token():
    """Found: a webhook URL without a scheme was logged in full, token included."""
    for url in ("hooks.example.invalid/services/T000/B000/s3cr3t-token",
                "http://127.0.0.1:9/services/T000/B000/s3cr3t-token"):
        error = alerts.post_webhook(url, {"a": 1}, timeout=2)
        assert error and "s3cr3t-token" not in error and "T000" not in error, error
    assert "not an http(s) URL" in alerts.post_webhook("hooks.example.invalid/x", {})
    assert alerts.redact_url("https://hooks.example.invalid/a/b?token=1") == (
        "https://hooks.example.invalid/…")


def test_the_failure_and_dead_run_sensors_are_running_by_default():
    import dagster as dg

    from dagster_project.definitions import defs

    for name in ("alert_on_run_failure", "reap_dead_runs"):
        sensor = defs().get_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, name


def test_a_delta_source_a_day_behind_within_its_tolerance_is_fresh_not_a_warning(tmp_path):
    """Found: marketing__activation_log's freshness showed a yellow 'Failed' for a 1-day lag
    against a 14-day tolerance on every healthy night. A warning must mean something: the
    activation log lands only when something was sent (a delta), so within its tolerance a
    quiet day is fresh, and the check passes saying why."""
    folder = tmp_path / "marketing" / "activation_log"
    folder.mkdir(parents=True)
    for k in range(1, 40):
        (folder / f"{(END - dt.timedelta(days=k)).isoformat()}.csv").write_text("x\n")
    f = alerts.source_freshness(folder, "marketing__activation_log", END, optional=True)
    assert f.status == "fresh" and f.landing == "delta", f
    assert "files land only when something changed" in f.reason
    # a daily feed a day behind is a warning: there, a missing day means missing data
    feed = tmp_path / "web" / "events"
    feed.mkdir(parents=True)
    for k in range(1, 40):
        (feed / f"{(END - dt.timedelta(days=k)).isoformat()}.csv").write_text("x\n")
    assert alerts.source_freshness(feed, "web__events", END, optional=True).status == "late"
