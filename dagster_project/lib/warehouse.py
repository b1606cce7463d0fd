"""Small, tested helpers for writing partition-keyed tables in DuckDB."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb
import pandas as pd

from .schemas import column_types


# When this process started using DuckDB, as near as it matters: a spill file older than this
# was written by another process.
_STARTED = time.time()


def spill_folder(database) -> Path:
    """Where DuckDB spills a persistent database's intermediate results (its default
    ``temp_directory``: the database file's name plus ``.tmp``)."""
    return Path(f"{database}.tmp")


def remove_stale_spill_files(database, started: float | None = None) -> dict[str, int]:
    """Remove the spill files a process that died left beside the warehouse; returns
    {file name: bytes freed}.

    DuckDB removes its spill files when it closes, but not those of a process that was killed
    or hit a full disk, and it does not clean them when the file is opened again (seen with
    DuckDB 1.4: 450 MB left after a sort was killed, still there after a reopen). On the night
    the disk filled, they are what keeps it full.

    Call it only with the warehouse open for writing: DuckDB's file lock then guarantees that
    no other process has it open, so a spill file older than this process (`started`) belongs
    to none. The folder is made owner-only too: spilled rows are warehouse rows (PII)."""
    folder = spill_folder(database)
    if not folder.is_dir():
        return {}
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    cutoff = _STARTED if started is None else started
    removed = {}
    for f in folder.glob("duckdb_temp_*"):
        try:
            st = f.stat()
            if f.is_file() and st.st_mtime < cutoff:
                f.unlink()
                removed[f.name] = st.st_size
        except FileNotFoundError:  # gone meanwhile
            continue
    return removed


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` (a table or a view) exists."""
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name = ?", [schema, table]).fetchone()[0] > 0


def align_columns(con: duckdb.DuckDBPyConnection, table: str, types: dict[str, str]) -> None:
    """Give `table` every column of `types` with that type: a column a newer version added is
    added (NULL in the rows before), one an older version typed otherwise is altered."""
    have = {r[0]: r[1] for r in con.execute(f"describe {table}").fetchall()}
    for name, typ in types.items():
        if name not in have:
            con.execute(f'alter table {table} add column "{name}" {typ}')
        elif have[name] != typ:
            con.execute(f'alter table {table} alter column "{name}" set data type {typ}')


def replace_partition(
    con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, as_of: dt.date
) -> int:
    """Replace the rows of `as_of` in `schema.table` with `frame` (which must carry an
    `as_of_date` column), in one transaction. Every column gets its declared type
    (``lib/schemas.py``), whatever the frame's dtypes that night (an all-NULL column of a
    night would otherwise fix the type from nothing). Creates the table if missing; a declared
    column the table lacks (a newer version of the asset) is added, NULL in the partitions
    written before; a column whose type differs from the declared one is altered to it.
    Re-running a partition replaces, never duplicates."""
    schema = table.split(".")[0]
    if "as_of_date" not in frame.columns:
        raise ValueError(f"{table}: frame has no as_of_date column")
    types = column_types(table, list(frame.columns))
    cols = ", ".join(f'"{c}" {t}' for c, t in types.items())
    select = ", ".join(f'cast("{c}" as {t}) as "{c}"' for c, t in types.items())
    con.execute(f"create schema if not exists {schema}")
    con.register("__frame", frame)
    try:
        con.execute("begin transaction")
        con.execute(f"create table if not exists {table} ({cols})")
        align_columns(con, table, types)
        con.execute(f"delete from {table} where as_of_date = ?", [as_of])
        con.execute(f"insert into {table} by name select {select} from __frame")
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


def relation_row_counts(
    con: duckdb.DuckDBPyConnection, relations: dict[str, tuple[str, str]], as_of: dt.date
) -> dict[str, dict[str, int]]:
    """Row counts of dbt relations, for the asset metadata: ``{key: {"rows": n}}``, plus
    ``"rows_in_partition"`` (rows with ``as_of_date = as_of``) for relations that have an
    ``as_of_date`` column. ``relations`` maps a key to (schema, name); a relation that does
    not exist (a model that was skipped or failed) is left out, not guessed."""
    out: dict[str, dict[str, int]] = {}
    for key, (schema, name) in relations.items():
        if not table_exists(con, schema, name):
            continue
        rel = f'"{schema}"."{name}"'
        counts = {"rows": int(con.execute(f"select count(*) from {rel}").fetchone()[0])}
        has_date = con.execute(
            "select count(*) from information_schema.columns where table_schema = ? "
            "and table_name = ? and column_name = 'as_of_date'", [schema, name]).fetchone()[0]
        if has_date:
            counts["rows_in_partition"] = int(con.execute(
                f"select count(*) from {rel} where as_of_date = ?", [as_of]).fetchone()[0])
        out[key] = counts
    return out
