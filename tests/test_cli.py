"""The CLI: where the daily partitions start, what it says about a date outside them, and its
summary when the warehouse is locked."""

import datetime as dt

from dagster_project import cli, settings


def _land(raw, rel: str) -> None:
    path = raw / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x\n")


def test_the_first_partition_is_the_earliest_landed_file_unless_configured(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    _land(raw, "crm/orders/2011-03-02.csv")
    _land(raw, "crm/customers/2010-12-01.csv")
    _land(raw, "crm/customers/2026-02-30.csv")  # not a date: the ingest names it, not here
    _land(raw, "crm/customers/notes.txt")
    monkeypatch.setenv("DS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DS_PARTITION_START", raising=False)
    assert settings.earliest_landed_file() == dt.date(2010, 12, 1)
    start, source = settings.partition_start_and_source()
    assert start == "2010-12-01" and "earliest landed file" in source
    monkeypatch.setenv("DS_PARTITION_START", "2009-01-01")
    assert settings.partition_start_and_source() == ("2009-01-01", "DS_PARTITION_START")


def test_with_nothing_landed_the_first_partition_is_yesterday(tmp_path, monkeypatch):
    monkeypatch.setenv("DS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DS_PARTITION_START", raising=False)
    start, source = settings.partition_start_and_source()
    assert start == (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    assert "no file has landed" in source


def test_a_date_outside_the_partitions_is_refused_with_the_range_and_how_to_change_it(
        monkeypatch):
    monkeypatch.setenv("DS_PARTITION_START", "2025-01-01")
    msg = cli.partition_range_message("1999-01-01", keys=["2025-01-01", "2025-06-30"])
    assert "no partition for 1999-01-01" in msg
    assert "2025-01-01 to 2025-06-30" in msg and "DS_PARTITION_START=YYYY-MM-DD" in msg


def test_the_summary_of_a_warehouse_locked_by_another_process_is_one_line(
        tmp_path, monkeypatch, capsys):
    import subprocess
    import sys

    import duckdb

    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("DS_DUCKDB_PATH", str(db))
        cli.summary("2025-06-30")
        out = capsys.readouterr().out
    finally:
        holder.stdin.close()
        holder.wait()
    assert "(not readable now: IO Error: Could not set lock on file" in out
    assert "Traceback" not in out


def test_a_missing_data_folder_is_named_in_one_line_with_exit_2(tmp_path, monkeypatch, capsys):
    """Found: a missing data folder took 109 s and a 30-line traceback blaming the warehouse
    file. The folders are checked first."""
    monkeypatch.setenv("DS_DATA_DIR", str(tmp_path / "nowhere"))
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("usage:"), err  # argparse's usage, then one line
    assert "no data folder" in err[1] and "nowhere" in err[1] and "DS_DATA_DIR" in err[1]

    _land(tmp_path / "nowhere" / "raw", "crm/orders/2025-06-30.csv")
    assert cli.main(["run", "--date", "2025-06-30"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "crm/customers, crm/order_lines" in line and "Traceback" not in line


def _warehouse_published(tmp_path, monkeypatch, day: str):
    import duckdb

    db = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create schema published")
    con.execute("create table published.publish_log (as_of_date date, run_id varchar, "
                "versions varchar, published_at timestamp)")
    con.execute("insert into published.publish_log values (?, 'run-1', '{}', now())", [day])
    con.close()
    monkeypatch.setenv("DS_DUCKDB_PATH", str(db))
    monkeypatch.setenv("DS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DS_PARTITION_START", "2025-01-01")


def test_the_summary_of_a_day_nothing_was_published_for_says_so_and_exits_1(
        tmp_path, monkeypatch, capsys):
    _warehouse_published(tmp_path, monkeypatch, "2025-06-29")
    assert cli.main(["summary", "--date", "2025-06-30"]) == 1
    out = capsys.readouterr().out
    assert "nothing published for 2025-06-30 (the latest published day is 2025-06-29)" in out
    assert "cli run --date 2025-06-30" in out and "next:" not in out
    assert cli.main(["summary", "--date", "2025-06-29"]) == 0
    out = capsys.readouterr().out
    assert "nothing published" not in out and "next:" in out and "make dev" in out


def test_a_reader_that_goes_away_ends_the_output_without_a_traceback(tmp_path, monkeypatch):
    """Found: `cli summary | head` ended in a BrokenPipeError traceback. The output stops;
    the command's exit code stays its own."""
    import os
    import subprocess
    import sys

    _warehouse_published(tmp_path, monkeypatch, "2025-06-29")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-m", "dagster_project.cli", "summary",
                               "--date", "2025-06-29"], cwd=settings.PROJECT_ROOT,
                              stdout=write, stderr=subprocess.PIPE, text=True, check=False)
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_cli_runs_print_one_line_per_finished_step_with_its_duration(capsys):
    """Found: `make run` was minutes of silence, or every Dagster event at DEBUG. The CLI's
    run config adds the progress logger: a line as each step ends, with its seconds."""
    import dagster as dg

    from dagster_project.defs.observability.progress import loggers

    @dg.asset
    def first() -> int:
        return 1

    @dg.asset
    def second(first: int) -> int:
        raise ValueError("bad")

    job = dg.define_asset_job("progress_test", selection=[first, second])
    defs = dg.Definitions.merge(loggers(), dg.Definitions(assets=[first, second], jobs=[job]))
    result = defs.resolve_job_def("progress_test").execute_in_process(
        run_config=cli._quiet(None), raise_on_error=False)
    assert not result.success
    lines = [line.split() for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ")]
    assert [(w[0], w[1], w[-1]) for w in lines] == [("done", "first", "s"),
                                                    ("FAILED", "second", "s")]
    assert all(float(w[2]) >= 0 for w in lines)
