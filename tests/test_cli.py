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
