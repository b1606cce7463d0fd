"""Warehouse retention (lib/retention.py, the prune_warehouse job, `cli prune`) on a copy of
the nightly run's warehouse, aged: the partition's rows are copied to older dates as if
earlier nights had run, so the real table layouts are pruned."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import duckdb
import pytest

from dagster_project import cli, settings
from dagster_project.lib import publish as pub
from dagster_project.lib import retention

from .helpers import END

OLD = END - dt.timedelta(days=60)  # a partition before the cut (35 days)
RECENT = END - dt.timedelta(days=10)  # a partition inside it
FEATURE_OLD = END - dt.timedelta(days=200)  # before cut - 18 * 7 days: no kept night reads it
FEATURE_KEPT = END - dt.timedelta(days=100)  # after it: a kept partition's training cutoff
PER_PARTITION = ["marts.customer_labels", *retention.PARTITIONED]


def _shift(con, table: str, src: dt.date, dst: dt.date) -> None:
    cols = [r[0] for r in con.execute(f"describe {table}").fetchall()]
    select = ", ".join("cast(? as date) as as_of_date" if c == "as_of_date" else f'"{c}"'
                       for c in cols)
    con.execute(f"insert into {table} select {select} from {table} where as_of_date = ?",
                [dst, src])


def _counts(con, table: str) -> dict:
    return dict(con.execute(f"select as_of_date, count(*) from {table} group by 1").fetchall())


@pytest.fixture()
def aged(nightly_run, tmp_path):
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(nightly_run["db"], db)
    con = duckdb.connect(str(db))
    for table in PER_PARTITION:
        for day in (OLD, RECENT):
            _shift(con, table, END, day)
    for day in (FEATURE_OLD, FEATURE_KEPT):
        _shift(con, "marts.customer_features", END, day)
    # earlier nights' candidates and published versions, as publish leaves them
    stamp, versions = OLD.strftime("%Y%m%d"), {}
    for name, version in con.execute(
            "select name, version from published.versions where as_of_date = ?",
            [END]).fetchall():
        old = f"{name}__{stamp}__0123abcd"
        versions[name] = old
        for schema in ("audit", "published"):
            con.execute(f"create table {schema}.{old} as select * from {schema}.{version}")
        con.execute("insert into published.versions select name, cast(? as date), ?, run_id, "
                    "row_count, content_hash, published_at from published.versions "
                    "where name = ? and as_of_date = ?", [OLD, old, name, END])
        con.execute(f"insert into published.{name}_history by name select "
                    f"cast(? as date) as partition_date, * from published.{old}", [OLD])
    # a view someone made on an old version: that version must stay
    con.execute(f"create view published.pinned as select * from published.{versions['scores']}")
    con.close()
    return db, versions


def test_prune_drops_old_partitions_and_keeps_what_later_nights_read(aged):
    db, versions = aged
    con = duckdb.connect(str(db))
    before = {t: _counts(con, t) for t in [*PER_PARTITION, "marts.customer_features"]}
    history = dict(con.execute("select partition_date, count(*) from "
                               "published.segments_history group by 1").fetchall())
    p = retention.plan(con, keep_days=35)
    assert (p.latest, p.cut, p.feature_cut) == (END, END - dt.timedelta(days=35),
                                                END - dt.timedelta(days=35 + 18 * 7))
    retention.apply(con, p)
    for table in PER_PARTITION:
        after = _counts(con, table)
        assert OLD not in after, table
        assert after[END] == before[table][END] and after[RECENT] == before[table][RECENT], table
    features = _counts(con, "marts.customer_features")
    assert FEATURE_OLD not in features
    assert features[FEATURE_KEPT] == before["marts.customer_features"][FEATURE_KEPT]
    assert features[END] == before["marts.customer_features"][END]
    tables = {f"{s}.{t}" for s, t in con.execute(
        "select schema_name, table_name from duckdb_tables()").fetchall()}
    for name, old in versions.items():
        assert f"audit.{old}" not in tables
        assert (f"published.{old}" in tables) == (name == "scores")  # pinned by a view
    assert p.kept_versions == [f"published.{versions['scores']}"]
    # what readers see is whole: the current views, the history, the log of versions
    for name in versions:
        assert con.execute(f"select count(*) from published.{name}").fetchone()[0] > 0
    assert dict(con.execute("select partition_date, count(*) from published.segments_history "
                            "group by 1").fetchall()) == history
    # the size-change check of a night after OLD reads the pruned version from the history
    sizes = pub.previous_sizes(con, "segments", "primary_segment", before=OLD + dt.timedelta(1))
    assert sum(sizes.values()) == history[OLD]
    # idempotent: a second prune finds nothing
    assert retention.plan(con, keep_days=35).empty
    con.close()


def test_prune_job_and_cli(aged, monkeypatch, capsys):
    import dagster as dg

    db, _ = aged
    monkeypatch.setenv("DS_DUCKDB_PATH", str(db))
    assert os.environ["DS_DUCKDB_PATH"] == str(settings.duckdb_path())
    # the CLI: a dry run changes nothing; a keep below the minimum is a usage error
    assert cli.main(["prune", "--keep-days", "35"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert cli.main(["prune", "--keep-days", "5"]) == 2
    con = duckdb.connect(str(db), read_only=True)
    assert OLD in _counts(con, "marts.customer_labels")
    con.close()
    # the job, as the weekly schedule runs it
    from dagster_project.definitions import defs

    job = defs().resolve_job_def("prune_warehouse")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = next(e.event_specific_data.metadata for e in result.all_events
                if e.event_type_value == "STEP_OUTPUT")
    assert meta["rows"].data["marts.customer_labels"] > 0
    assert meta["cut"].text == str(END - dt.timedelta(days=35))
    con = duckdb.connect(str(db), read_only=True)
    assert OLD not in _counts(con, "marts.customer_labels")
    con.close()
    assert cli.main(["prune", "--keep-days", "35", "--apply"]) == 0
    assert "0 rows to delete" in capsys.readouterr().out


def test_keep_days_has_a_floor(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(ValueError, match="at least 8"):
        retention.plan(con, keep_days=7)
    assert retention.plan(con, keep_days=8).latest is None  # an empty warehouse: nothing
