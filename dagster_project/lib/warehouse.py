"""Small, tested helpers for writing partition-keyed tables in DuckDB."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` (a table or a view) exists."""
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name = ?", [schema, table]).fetchone()[0] > 0


def replace_partition(
    con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, as_of: dt.date
) -> int:
    """Replace the rows of `as_of` in `schema.table` with `frame` (which must carry an
    `as_of_date` column), in one transaction. Creates the table from the frame if missing.
    Re-running a partition therefore replaces, never duplicates."""
    schema = table.split(".")[0]
    if "as_of_date" not in frame.columns:
        raise ValueError(f"{table}: frame has no as_of_date column")
    con.execute(f"create schema if not exists {schema}")
    con.register("__frame", frame)
    try:
        con.execute("begin transaction")
        con.execute(f"create table if not exists {table} as select * from __frame limit 0")
        con.execute(f"delete from {table} where as_of_date = ?", [as_of])
        con.execute(f"insert into {table} by name select * from __frame")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("__frame")
    n = con.execute(f"select count(*) from {table} where as_of_date = ?", [as_of]).fetchone()[0]
    if n != len(frame):  # a failed statement makes COMMIT roll back silently (PITFALLS.md)
        raise RuntimeError(f"{table}: wrote {len(frame)} rows for {as_of}, read back {n}")
    return n
