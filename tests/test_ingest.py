import datetime as dt
import shutil

import duckdb
import pandas as pd
import pytest

from dagster_project.lib.ingest import IngestError, ingest_partition
from dagster_project.synthetic import Config, generate

from .helpers import END, START

QUARANTINED_KINDS = ("malformed_row", "unparseable_timestamp", "future_timestamp",
                     "negative_quantity")


@pytest.fixture(scope="module")
def ingested(dataset, tmp_path_factory):
    db = tmp_path_factory.mktemp("ingest") / "w.duckdb"
    con = duckdb.connect(str(db))
    first = ingest_partition(con, dataset / "raw", END)
    counts_1 = {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in first}
    q_1 = con.execute("select count(*) from raw.quarantine").fetchone()[0]
    second = ingest_partition(con, dataset / "raw", END)
    yield {"con": con, "first": first, "second": second, "counts_1": counts_1, "q_1": q_1}
    con.close()


def test_rerunning_a_partition_leaves_identical_row_counts(ingested):
    con = ingested["con"]
    counts_2 = {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0]
                for t in ingested["first"]}
    assert counts_2 == ingested["counts_1"]
    assert con.execute("select count(*) from raw.quarantine").fetchone()[0] == ingested["q_1"]
    assert all(r.files_loaded == 0 for r in ingested["second"].values())
    assert sum(r.files_loaded for r in ingested["first"].values()) > 1000


def test_every_injected_malformed_row_is_in_quarantine_with_a_reason(ingested, dataset):
    defects = pd.read_parquet(dataset / "truth" / "defects.parquet")
    bad = defects[defects["kind"].isin(QUARANTINED_KINDS)]
    assert set(bad["kind"]) == set(QUARANTINED_KINDS)
    # a negative quantity on an order line is kept in raw: a credit note's lines are returns,
    # a purchase's are left out and listed by dbt (test_features_peer); a zero is quarantined
    credit = ingested["con"].execute(
        "select _file as file, _line as line from raw.crm__order_lines where quantity < 0").df()
    negative_lines = bad.merge(credit, on=["file", "line"], how="inner")
    assert len(negative_lines) > 0
    assert (negative_lines["kind"] == "negative_quantity").all()
    bad = bad.merge(credit, on=["file", "line"], how="left", indicator=True)
    bad = bad[bad["_merge"] == "left_only"].drop(columns="_merge")
    q = ingested["con"].execute("select file, line, reason from raw.quarantine").df()
    merged = bad.merge(q, on=["file", "line"], how="left")
    missed = merged[merged["reason"].isna()]
    assert missed.empty, f"{len(missed)} injected defects not quarantined:\n{missed.head()}"
    assert (merged["reason"].str.len() > 5).all()


def test_quarantine_rows_name_file_line_and_column(ingested):
    q = ingested["con"].execute(
        "select * from raw.quarantine where reason = 'unparseable timestamp' limit 5").df()
    assert len(q) == 5
    assert q["file"].str.match(r"^[a-z]+/[a-z_]+/\d{4}-\d{2}-\d{2}\.csv$").all()
    assert (q["line"] >= 2).all() and q["column_name"].notna().all()


def test_nothing_read_is_lost_loaded_plus_quarantined_equals_lines_in_files(ingested, dataset):
    con = ingested["con"]
    files = con.execute(
        "select raw_table, file, rows_loaded + rows_quarantined as n from raw.ingested_files"
    ).df()
    sample = files.sort_values(["raw_table", "file"]).groupby("raw_table").head(3)
    for row in sample.itertuples():
        with open(dataset / "raw" / row.file, encoding="utf-8") as f:
            data_lines = sum(1 for _ in f) - 1
        assert row.n == data_lines, row


def test_a_file_missing_a_required_column_fails_naming_file_and_column(tmp_path):
    generate(Config(customers=200, start=START, end=dt.date(2025, 1, 20), seed=3,
                    out=tmp_path / "raw", truth=tmp_path / "truth",
                    missing_column="crm__orders:gross_amount"))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(IngestError) as err:
        ingest_partition(con, tmp_path / "raw", dt.date(2025, 1, 20))
    assert "crm/orders/2025-01-20.csv" in str(err.value)
    assert "gross_amount" in str(err.value)
    # the day before, the bad file had not landed: the partition loads fine
    con2 = duckdb.connect(str(tmp_path / "w2.duckdb"))
    ingest_partition(con2, tmp_path / "raw", dt.date(2025, 1, 19))


def test_files_landed_after_the_partition_are_not_read(dataset, tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest_partition(con, dataset / "raw", dt.date(2025, 3, 1))
    latest = con.execute("select max(_file_date) from raw.crm__orders").fetchone()[0]
    assert latest == dt.date(2025, 3, 1)


def test_an_absent_optional_source_is_recorded_as_absent(dataset, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(dataset / "raw" / "crm", raw / "crm")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    results = ingest_partition(con, raw, END)
    assert not results["web__events"].present
    status = dict(con.execute(
        "select raw_table, present from raw.source_status where as_of_date = ?", [END]
    ).fetchall())
    assert status["web__events"] is False and status["crm__orders"] is True


def test_every_loaded_row_keeps_its_physical_line_around_rejected_lines(tmp_path):
    """Accepted rows are numbered past rejected lines (consecutive ones too), per file; the
    rejected and rule-quarantined lines are exactly the bad ones. Each order id carries the
    line it was written on."""
    raw = tmp_path / "raw"
    day1, day2 = dt.date(2025, 3, 1), dt.date(2025, 3, 2)
    for d in (day1, day2):
        (raw / "crm" / "customers").mkdir(parents=True, exist_ok=True)
        (raw / "crm" / "customers" / f"{d}.csv").write_text(
            "customer_id,email,phone,first_name,last_name,country,zip,created_at,updated_at,"
            "marketing_consent\n"
            f"C1,,,,,DE,,{d}T08:00:00Z,{d}T08:00:00Z,true\n")
        (raw / "crm" / "order_lines").mkdir(parents=True, exist_ok=True)
        (raw / "crm" / "order_lines" / f"{d}.csv").write_text(
            "order_id,line_number,sku,category,quantity,unit_price,unit_cost\n")
    header = ("order_id,customer_id,ordered_at,currency,gross_amount,discount_amount,"
              "coupon_code,shipping_fee,shipping_cost,sales_channel,utm_medium\n")
    bad = {1: {3, 4, 7}, 2: {2, 5, 6}}  # malformed (too few columns), per file
    future = {1: 9, 2: 8}  # a timestamp after the file's landing day: a rule quarantines it
    (raw / "crm" / "orders").mkdir(parents=True)
    for n, d in ((1, day1), (2, day2)):
        lines = [header]
        for line in range(2, 12):
            ts = f"{d + dt.timedelta(days=2)}T10:00:00Z" if line == future[n] else f"{d}T10:00:00Z"
            lines.append(f"X{n}-{line},C1\n" if line in bad[n] else
                         f"O{n}-{line},C1,{ts},EUR,10.0,,,,,web,\n")
        (raw / "crm" / "orders" / f"{d}.csv").write_text("".join(lines))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest_partition(con, raw, day2)
    rows = con.execute("select order_id, _file, _line from raw.crm__orders").fetchall()
    assert len(rows) == 2 * 10 - 6 - 2
    for order_id, file, line in rows:
        n, written_on = order_id[1:].split("-")
        assert file.endswith(f"{(day1, day2)[int(n) - 1]}.csv")
        assert line == int(written_on), (order_id, line)
    q = con.execute("select file, line, reason from raw.quarantine "
                    "where raw_table = 'crm__orders' order by file, line").fetchall()
    expected = sorted([(f"crm/orders/{(day1, day2)[n - 1]}.csv", ln)
                       for n in (1, 2) for ln in (*bad[n], future[n])])
    assert [(f, ln) for f, ln, _ in q] == expected
    assert sum("future" in r for _, _, r in q) == 2


def test_a_loaded_file_is_read_again_only_when_its_size_or_mtime_changed(
        dataset, tmp_path, monkeypatch):
    import os

    from dagster_project.lib import ingest

    raw = tmp_path / "raw"
    shutil.copytree(dataset / "raw" / "crm", raw / "crm")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest_partition(con, raw, END)
    hashed = []
    real = ingest._digest
    monkeypatch.setattr(ingest, "_digest", lambda p: hashed.append(p.name) or real(p))
    assert sum(r.files_loaded for r in ingest_partition(con, raw, END).values()) == 0
    assert hashed == []  # nothing changed: no file read again

    # touched, same content: hashed once, not reloaded, and its new stat remembered
    orders = sorted((raw / "crm" / "orders").glob("*.csv"))[-1]
    st = orders.stat()
    os.utime(orders, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    results = ingest_partition(con, raw, END)
    assert hashed == [orders.name] and results["crm__orders"].files_loaded == 0
    hashed.clear()
    ingest_partition(con, raw, END)
    assert hashed == []

    # re-delivered with one character changed (same size, a later mtime): reloaded
    lines = orders.read_text().splitlines(keepends=True)
    row = lines[-1]
    i = next(k for k, ch in enumerate(row) if ch.isdigit() and ch != "9")
    lines[-1] = row[:i] + str(int(row[i]) + 1) + row[i + 1:]
    orders.write_text("".join(lines))
    os.utime(orders, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert orders.stat().st_size == st.st_size
    results = ingest_partition(con, raw, END)
    assert hashed == [orders.name] and results["crm__orders"].files_loaded == 1
    sha = con.execute("select sha256 from raw.ingested_files where file = ?",
                      [f"crm/orders/{orders.name}"]).fetchone()[0]
    assert sha == real(orders).sha256
