"""Which optional sources a partition has (``raw.source_status``, written by the ingest)."""

from __future__ import annotations

import datetime as dt

import duckdb

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
    return {family: bool(status.get(raw)) for family, raw in FAMILIES.items()}


def absent_sources(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> dict[str, str]:
    """{raw table: why it is absent} for the optional tables without rows by ``as_of``."""
    from .contract import TABLES

    status = _status(con, as_of)
    out = {}
    for t in TABLES:
        if t.optional and not status.get(t.raw_name):
            out[t.raw_name] = f"optional: no {t.source}/{t.table} rows landed by {as_of}"
    return out
