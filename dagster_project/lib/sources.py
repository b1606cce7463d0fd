"""Which optional sources a partition has (``raw.source_status``, written by the ingest)."""

from __future__ import annotations

import datetime as dt

import duckdb

from .contract import TABLES

# the source families the layers ask about, and the raw table that decides each
FAMILIES = {
    "web": "web__events",
    "ads": "ads__exposures",
    "returns": "returns__returns",
    "support": "crm__support_tickets",
}


def _status(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> dict[str, bool]:
    return dict(con.execute(
        "select raw_table, present and rows_in_table > 0 from raw.source_status "
        "where as_of_date = ?", [as_of]).fetchall())


def sources_present(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> dict[str, bool]:
    """{family: whether its raw table has rows landed by ``as_of``}."""
    status = _status(con, as_of)
    present = {family: bool(status.get(raw)) for family, raw in FAMILIES.items()}
    if not present["returns"]:
        # a shop that exports returns as credit notes (negative order lines) has returns too
        present["returns"] = credit_note_lines(con, as_of) > 0
    return present


def credit_note_lines(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> int:
    """Credit notes' lines with a negative quantity landed by ``as_of`` (read as returns):
    lines of orders with a negative gross amount (stg_crm__credit_note_returns)."""
    try:
        return int(con.execute(
            "select count(*) from raw.crm__order_lines l join raw.crm__orders o "
            "on trim(o.order_id) = trim(l.order_id) and o._file_date <= ? "
            "where l.quantity < 0 and o.gross_amount < 0 and l._file_date <= ?",
            [as_of, as_of]).fetchone()[0])
    except duckdb.CatalogException:
        return 0


def absent_sources(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> dict[str, str]:
    """{raw table: why it is absent} for the optional tables without rows by ``as_of``."""
    status = _status(con, as_of)
    out = {}
    for t in TABLES:
        if t.raw_name == "returns__returns" and credit_note_lines(con, as_of):
            continue  # returns come as credit notes
        if t.optional and not status.get(t.raw_name):
            out[t.raw_name] = f"optional: no {t.source}/{t.table} rows landed by {as_of}"
    return out
