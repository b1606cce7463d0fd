import datetime as dt
import os

import duckdb
import pandas as pd
import pytest

from dagster_project.lib import schemas
from dagster_project.lib.warehouse import replace_partition

DAY1, DAY2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


@pytest.fixture
def declared(monkeypatch):
    monkeypatch.setitem(schemas.SCHEMAS, "s.t", (("as_of_date", "DATE"), ("x", "BIGINT"),
                                                 ("y", "DOUBLE"), ("note", "VARCHAR")))


def test_a_partition_rewritten_replaces_its_rows_and_a_new_column_is_added(declared):
    con = duckdb.connect()
    replace_partition(con, "s.t", pd.DataFrame({"as_of_date": [DAY1] * 2, "x": [1, 2]}), DAY1)
    replace_partition(con, "s.t", pd.DataFrame({"as_of_date": [DAY1] * 2, "x": [3, 4]}), DAY1)
    # a later version of the asset writes one more column: earlier partitions read it as NULL
    replace_partition(con, "s.t", pd.DataFrame({"as_of_date": [DAY2], "x": [5], "y": [0.5]}),
                      DAY2)
    rows = con.execute("select as_of_date, x, y from s.t order by x").fetchall()
    assert rows == [(DAY1, 3, None), (DAY1, 4, None), (DAY2, 5, 0.5)]
    assert dict(con.execute("select column_name, data_type from information_schema.columns "
                            "where table_name = 't'").fetchall())["y"] == "DOUBLE"


def test_a_column_null_on_the_first_night_keeps_its_declared_type(declared):
    con = duckdb.connect()
    replace_partition(con, "s.t", pd.DataFrame(
        {"as_of_date": [DAY1], "x": [1], "note": [None]}), DAY1)
    replace_partition(con, "s.t", pd.DataFrame(
        {"as_of_date": [DAY2], "x": [2], "note": ["no rows with a label"]}), DAY2)
    assert con.execute("select note from s.t where as_of_date = ?", [DAY2]).fetchone()[0] \
        == "no rows with a label"


def test_a_table_created_with_a_wrong_type_is_altered_to_the_declared_one(declared):
    con = duckdb.connect()
    con.execute("create schema s")
    con.execute("create table s.t (as_of_date date, x bigint, note integer)")  # an old version
    con.execute("insert into s.t values (?, 1, null)", [DAY1])
    replace_partition(con, "s.t", pd.DataFrame(
        {"as_of_date": [DAY2], "x": [2], "note": ["text"]}), DAY2)
    assert con.execute("select count(*), max(note) from s.t").fetchone() == (2, "text")


def test_an_undeclared_column_is_an_error_not_a_guess(declared):
    con = duckdb.connect()
    with pytest.raises(schemas.UndeclaredColumn, match="'surprise'"):
        replace_partition(con, "s.t", pd.DataFrame(
            {"as_of_date": [DAY1], "surprise": [1]}), DAY1)


def _metrics(as_of: dt.date, absent: set[str]) -> pd.DataFrame:
    rows = []
    for target in ("purchase_7d", "purchase_30d", "churn_90d", "return_60d"):
        if target in absent:
            rows.append({"as_of_date": as_of, "target": target, "status": "absent",
                         "absent_reason": f"no rows with a {target} label"})
        else:
            rows.append({"as_of_date": as_of, "target": target, "status": "trained",
                         "absent_reason": None, "model_roc_auc": 0.8, "model_n_pos": 120,
                         "beats_baseline": True, "best_iteration": 40})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("order", ["present_then_absent", "absent_then_present"])
def test_model_metrics_take_nights_with_and_without_absent_models_in_any_order(order):
    con = duckdb.connect()
    nights = [set(), {"purchase_7d", "return_60d", "churn_90d"}]
    if order == "absent_then_present":
        nights.reverse()
    for day, absent in zip((DAY1, DAY2), nights, strict=True):
        replace_partition(con, "segmentation.model_metrics", _metrics(day, absent), day)
    got = con.execute("select as_of_date, target, status, absent_reason, model_n_pos "
                      "from segmentation.model_metrics order by 1, 2").df()
    assert len(got) == 8
    assert set(got.loc[got.status == "absent", "absent_reason"]) == {
        "no rows with a purchase_7d label", "no rows with a return_60d label",
        "no rows with a churn_90d label"}
    assert (got.loc[got.status == "trained", "model_n_pos"] == 120).all()


def test_the_warehouse_file_is_for_its_owner_only(tmp_path):
    """Found: the warehouse (raw PII) was world-readable (0644 under the usual umask)."""
    import duckdb as ddb
    from dagster_duckdb import DuckDBResource

    from dagster_project.defs.resources import warehouse

    path = tmp_path / "w.duckdb"
    old = os.umask(0o022)
    try:
        ddb.connect(str(path)).close()
        assert path.stat().st_mode & 0o777 == 0o644
        with warehouse(DuckDBResource(database=str(path))) as con:
            con.execute("select 1").fetchone()
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


SPILLING = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], config={"memory_limit": "30MB", "threads": 1,
                                          "preserve_insertion_order": False})
con.execute("create table t as select range i, md5(range::varchar) s from range(8000000) "
            "order by s")
"""


def test_spill_files_of_a_killed_run_are_removed_by_the_next_step_that_opens_it(tmp_path):
    """Found: a run killed (or stopped by a full disk) while DuckDB spilled left its spill
    files beside the warehouse (450 MB after one sort), and reopening the file did not remove
    them. The next step that opens the warehouse for writing removes them (no other process
    can have it open then) and makes the folder owner-only (spilled rows are PII)."""
    import signal
    import subprocess
    import sys
    import time

    from dagster_project.lib.warehouse import spill_folder

    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).close()
    proc = subprocess.Popen([sys.executable, "-c", SPILLING, str(db)])
    folder = spill_folder(db)
    while not (folder.is_dir() and any(folder.glob("duckdb_temp_*"))):
        assert proc.poll() is None, "the sort ended before it spilled"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = sorted(folder.glob("duckdb_temp_*"))
    assert left
    duckdb.connect(str(db)).close()  # DuckDB itself leaves them
    assert sorted(folder.glob("duckdb_temp_*")) == left

    next_step = ("import sys\nfrom dagster_duckdb import DuckDBResource\n"
                 "from dagster_project.defs.resources import warehouse\n"
                 "with warehouse(DuckDBResource(database=sys.argv[1])) as con:\n"
                 "    print(con.execute('select 42').fetchone()[0])\n")
    done = subprocess.run([sys.executable, "-c", next_step, str(db)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "42", done.stderr[-2000:]
    assert "spill file(s) of a process that died" in done.stderr
    assert not any(folder.glob("duckdb_temp_*"))
    assert folder.stat().st_mode & 0o777 == 0o700
