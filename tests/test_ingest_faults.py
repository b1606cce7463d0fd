"""Faults injected into landed files the way they were found (issue 19, items 1 and 7): each
must load by the contract's names, quarantine with a reason, or stop the run naming the file
and column — never load wrong values or lose a day quietly."""

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from dagster_project.lib.ingest import FileRules, IngestError, ingest_partition

DAY = dt.date(2025, 3, 1)
ORDERS = ("order_id,customer_id,ordered_at,currency,gross_amount,discount_amount,coupon_code,"
          "shipping_fee,shipping_cost,sales_channel,utm_medium")
LINES = "order_id,line_number,sku,category,quantity,unit_price,unit_cost"
CUSTOMERS = ("customer_id,email,phone,first_name,last_name,country,zip,created_at,updated_at,"
             "marketing_consent")


def _write(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def _shop(raw: Path, orders: tuple[str, list[str]] | None = None,
          lines: tuple[str, list[str]] | None = None, day: dt.date = DAY) -> None:
    """A minimal CRM export of one day: one customer, the given orders and order lines."""
    _write(raw / "crm" / "customers" / f"{day}.csv", CUSTOMERS,
           [f"C1,a@example.com,,Ann,Lee,DE,10115,{day}T08:00:00Z,{day}T08:00:00Z,true"])
    header, rows = orders or (ORDERS, [f"O{i},C1,{day}T10:00:00Z,EUR,10.0,0,,,,web,"
                                       for i in range(30)])
    _write(raw / "crm" / "orders" / f"{day}.csv", header, rows)
    header, rows = lines or (LINES, ["O1,1,SKU1,shoes,1,10.0,4.0"])
    _write(raw / "crm" / "order_lines" / f"{day}.csv", header, rows)


def _ingest(tmp_path: Path, raw: Path, rules: FileRules | None = None, day: dt.date = DAY):
    tmp_path.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    return con, ingest_partition(con, raw, day, rules or FileRules())


def test_columns_are_bound_by_name_when_the_export_reorders_them(tmp_path):
    """Found: gross and discount swapped in the header loaded the discount as the gross."""
    raw = tmp_path / "raw"
    header = ORDERS.replace("gross_amount,discount_amount", "discount_amount,gross_amount")
    header = header.replace("order_id,customer_id", "customer_id,order_id")
    _shop(raw, orders=(header, [f"C1,O{i},{DAY}T10:00:00Z,EUR,26.24,104.97,,,,web,"
                                for i in range(3)]))
    con, _ = _ingest(tmp_path, raw)
    got = con.execute("select order_id, customer_id, gross_amount, discount_amount "
                      "from raw.crm__orders order by order_id").fetchall()
    assert got == [(f"O{i}", "C1", 104.97, 26.24) for i in range(3)]


def test_an_unknown_extra_column_is_recorded_and_ignored(tmp_path):
    """Found: an extra column sent every row of the file to quarantine, and the run went on."""
    raw = tmp_path / "raw"
    rows = [f"O{i},C1,{DAY}T10:00:00Z,gold,EUR,10.0,0,,,,web," for i in range(30)]
    _shop(raw, orders=(ORDERS.replace("ordered_at,", "ordered_at,loyalty_tier,"), rows))
    con, results = _ingest(tmp_path, raw)
    assert results["crm__orders"].rows_loaded == 30
    assert results["crm__orders"].rows_quarantined == 0
    assert results["crm__orders"].ignored_columns == {f"crm/orders/{DAY}.csv": ["loyalty_tier"]}
    recorded = con.execute("select ignored_columns from raw.ingested_files "
                           "where file = ?", [f"crm/orders/{DAY}.csv"]).fetchone()[0]
    assert recorded == "loyalty_tier"


def test_a_column_named_twice_stops_the_run_naming_it(tmp_path):
    raw = tmp_path / "raw"
    _shop(raw, orders=(ORDERS + ",currency", [f"O1,C1,{DAY}T10:00:00Z,EUR,10,0,,,,web,,EUR"]))
    with pytest.raises(IngestError, match=r"crm/orders/2025-03-01\.csv.*'currency'.*more than once"):
        _ingest(tmp_path, raw)


def test_a_retyped_column_stops_the_run_naming_file_and_column(tmp_path):
    """Found: a retyped column quarantined the day's orders while the run published."""
    raw = tmp_path / "raw"
    rows = [f"O{i},C1,{DAY}T10:00:00Z,EUR,{'10.50 EUR' if i < 8 else '10.5'},0,,,,web,"
            for i in range(30)]
    _shop(raw, orders=(ORDERS, rows))
    with pytest.raises(IngestError) as err:
        _ingest(tmp_path, raw)
    msg = str(err.value)
    assert f"crm/orders/{DAY}.csv" in msg and "'gross_amount'" in msg and "8 of 30" in msg
    assert "DS_MAX_CAST_FAILURE_SHARE" in msg
    # the same file under a looser rule loads, its 8 bad rows quarantined with the column
    con, results = _ingest(tmp_path / "loose", raw,
                           FileRules(max_cast_failure_share=0.5, max_quarantine_share=0.5))
    assert (results["crm__orders"].rows_loaded, results["crm__orders"].rows_quarantined) == (22, 8)
    assert {r[0] for r in con.execute("select column_name from raw.quarantine").fetchall()} == {
        "gross_amount"}


def test_a_wholly_rejected_file_always_stops_the_run(tmp_path):
    """Even a small file, under shares that would otherwise let it through."""
    raw = tmp_path / "raw"
    _shop(raw, orders=(ORDERS, [f"O{i},C1,{DAY}T10:00:00Z,EUR,n/a,0,,,,web," for i in range(5)]))
    with pytest.raises(IngestError, match=r"crm/orders/2025-03-01\.csv: every one of its 5 rows"):
        _ingest(tmp_path, raw, FileRules(max_cast_failure_share=1, max_quarantine_share=1))


def test_a_required_file_mostly_quarantined_stops_the_run(tmp_path):
    """Rule-quarantined rows (here future timestamps) count towards the file's share."""
    raw = tmp_path / "raw"
    later = DAY + dt.timedelta(days=3)
    rows = [f"O{i},C1,{later if i < 10 else DAY}T10:00:00Z,EUR,10.0,0,,,,web," for i in range(30)]
    _shop(raw, orders=(ORDERS, rows))
    with pytest.raises(IngestError, match=r"10 of 30 rows quarantined.*required source"):
        _ingest(tmp_path, raw)
    # below the share the same defects go to quarantine and the night goes on
    _, results = _ingest(tmp_path / "loose", raw, FileRules(max_quarantine_share=0.5))
    assert results["crm__orders"].rows_quarantined == 10


def test_an_optional_file_mostly_quarantined_loads_with_a_warning(tmp_path):
    raw = tmp_path / "raw"
    _shop(raw)
    later = DAY + dt.timedelta(days=3)
    _write(raw / "crm" / "support_tickets" / f"{DAY}.csv",
           "ticket_id,customer_id,created_at,topic,handle_minutes",
           [f"T{i},C1,{later if i < 10 else DAY}T09:00:00Z,delivery,4.5" for i in range(30)])
    _, results = _ingest(tmp_path, raw)
    r = results["crm__support_tickets"]
    assert (r.rows_loaded, r.rows_quarantined) == (20, 10)
    assert len(r.warnings) == 1 and "optional source" in r.warnings[0]


def test_a_fractional_quantity_is_quarantined_not_rounded(tmp_path):
    """Found: quantity 2.5 loaded as 3."""
    raw = tmp_path / "raw"
    _shop(raw, lines=(LINES, ["O1,1,SKU1,shoes,2.5,10.0,4.0", "O1,2,SKU2,shoes,2,10.0,4.0"]))
    con, _ = _ingest(tmp_path, raw)
    assert con.execute("select line_number, quantity from raw.crm__order_lines").fetchall() == [
        (2, 2)]
    q = con.execute("select line, column_name, reason from raw.quarantine").fetchall()
    assert q == [(2, "quantity", "not a whole number (quantity is INTEGER)")]


def test_a_file_named_after_an_impossible_date_stops_the_run_naming_it(tmp_path):
    """Found: 2026-02-30.csv crashed the ingest without naming the file."""
    raw = tmp_path / "raw"
    _shop(raw)
    _write(raw / "crm" / "orders" / "2025-02-30.csv", ORDERS, [])
    with pytest.raises(IngestError, match=r"crm/orders/2025-02-30\.csv: the file name is not a "
                                          r"calendar date"):
        _ingest(tmp_path, raw)


def test_a_quoted_newline_does_not_shift_later_line_numbers(tmp_path):
    """Found: one quoted newline shifted every later line number by one."""
    raw = tmp_path / "raw"
    rows = [f"O{i},C1,{DAY}T10:00:00Z,EUR,10.0,0,,,,web," for i in range(2, 5)]
    rows[1] = f'O3,C1,{DAY}T10:00:00Z,EUR,10.0,0,"SPRING\nSALE",,,web,'  # lines 3-4
    rows += [f"O{i},C1,{DAY}T10:00:00Z,EUR,10.0,0,,,,web," for i in range(6, 8)]  # lines 6, 7
    rows.append("O8,C1")  # line 8: too few columns
    _shop(raw, orders=(ORDERS, rows))
    con, _ = _ingest(tmp_path, raw)
    got = dict(con.execute("select order_id, _line from raw.crm__orders").fetchall())
    assert got == {"O2": 2, "O3": 3, "O4": 5, "O6": 6, "O7": 7}
    assert con.execute("select line from raw.quarantine").fetchall() == [(8,)]


def test_an_impossible_utc_offset_is_quarantined(tmp_path):
    """Found: +25:00 loaded as a shifted UTC time."""
    raw = tmp_path / "raw"
    rows = [f"O1,C1,{DAY}T10:00:00+25:00,EUR,10.0,0,,,,web,",
            f"O2,C1,{DAY}T10:00:00-13:00,EUR,10.0,0,,,,web,",
            f"O3,C1,{DAY}T10:00:00+05:75,EUR,10.0,0,,,,web,",
            f"O4,C1,{DAY}T10:00:00+05:30,EUR,10.0,0,,,,web,",
            f"O5,C1,{DAY}T10:00:00-12:00,EUR,10.0,0,,,,web,"]
    _shop(raw, orders=(ORDERS, rows))
    con, _ = _ingest(tmp_path, raw)
    loaded = dict(con.execute("select order_id, ordered_at from raw.crm__orders").fetchall())
    assert set(loaded) == {"O4", "O5"}
    assert loaded["O4"] == dt.datetime(2025, 3, 1, 4, 30, tzinfo=loaded["O4"].tzinfo)
    q = con.execute("select line, reason from raw.quarantine order by line").fetchall()
    assert [line for line, _ in q] == [2, 3, 4]
    assert all("impossible UTC offset" in reason for _, reason in q)
