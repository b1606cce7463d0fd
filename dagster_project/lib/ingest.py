"""Ingest landed source files into DuckDB `raw` tables, with a quarantine for bad rows.

Pure functions over a DuckDB connection (no Dagster import). For a partition date D:

* every file ``<raw_root>/<source>/<table>/<YYYY-MM-DD>.csv`` with a landing date <= D that is
  not yet loaded, or whose content changed, is (re)loaded: its old rows are deleted first, so
  re-running a partition replaces and never duplicates. Files landed after D are not read.
  A loaded file is hashed again only when its size or modification time changed.
* a file missing a required column stops the run with an `IngestError` naming file and column.
* rows DuckDB's CSV reader rejects (wrong field count, a value that does not cast) go to
  ``raw.quarantine`` with file, line, column and DuckDB's reason (its own reject tables).
* rows that parse but break a value rule (unparseable or future timestamp, missing required
  value, non-positive quantity) go to ``raw.quarantine`` with the rule as reason.
* an optional source with no files is recorded as absent in ``raw.source_status`` and gets an
  empty table with the contract's columns, so dbt builds on CRM data alone.

Line numbers are physical lines (header = line 1), assuming one record per line, which holds
for files whose quoted values contain no newlines.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .contract import DATE_FILE, TABLES, SourceTable



class IngestError(RuntimeError):
    """Input the pipeline cannot load; the message names file, row and column."""


@dataclass(frozen=True)
class TableResult:
    raw_name: str
    present: bool
    files_total: int
    files_loaded: int
    rows_loaded: int
    rows_quarantined: int
    rows_in_table: int


QUARANTINE_DDL = """
create table if not exists raw.quarantine (
    raw_table varchar not null,
    file varchar not null,
    line bigint,
    column_name varchar,
    reason varchar not null,
    action varchar not null,      -- 'quarantined' (row kept out of raw) or 'repaired'
    raw_record varchar
)
"""

FILES_DDL = """
create table if not exists raw.ingested_files (
    raw_table varchar not null,
    file varchar not null,
    file_date date not null,
    sha256 varchar not null,
    rows_loaded bigint not null,
    rows_quarantined bigint not null,
    size_bytes bigint,   -- the file's size and modification time when its hash was taken:
    mtime_ns bigint,     -- while both are unchanged the file is not read again (see below)
    primary key (raw_table, file)
)
"""

STATUS_DDL = """
create table if not exists raw.source_status (
    as_of_date date not null,
    raw_table varchar not null,
    present boolean not null,
    files bigint not null,
    rows_in_table bigint not null,
    note varchar,
    primary key (as_of_date, raw_table)
)
"""


def _sql_type(col_type: str) -> str:
    # Timestamps are read as text and parsed by us: DuckDB 1.5 turns an unparseable
    # TIMESTAMPTZ into NULL silently instead of rejecting the row (PITFALLS.md).
    return "VARCHAR" if col_type == "TIMESTAMPTZ" else col_type


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    con.execute(QUARANTINE_DDL)
    con.execute(FILES_DDL)
    for col in ("size_bytes", "mtime_ns"):  # warehouses created before these columns
        con.execute(f"alter table raw.ingested_files add column if not exists {col} bigint")
    con.execute(STATUS_DDL)
    for t in TABLES:
        cols = ", ".join(f'"{c.name}" {c.type}' for c in t.columns)
        con.execute(
            f"create table if not exists raw.{t.raw_name} ({cols}, "
            "_file varchar not null, _file_date date not null, _line bigint not null)"
        )


def landed_files(raw_root: Path, t: SourceTable, as_of: dt.date) -> list[tuple[Path, dt.date]]:
    folder = raw_root / t.source / t.table
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        m = DATE_FILE.match(p.name)
        if m:
            d = dt.date.fromisoformat(m.group(1))
            if d <= as_of:
                out.append((p, d))
    return out


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_header(path: Path, t: SourceTable, rel: str) -> None:
    with path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    header = [h.strip() for h in header]
    missing = [c.name for c in t.columns if c.required and c.name not in header]
    if missing:
        raise IngestError(
            f"{rel}: required column {', '.join(repr(m) for m in missing)} missing from the "
            f"header (line 1); found columns {header}. Fix the export or rename the column; "
            f"the contract is in data/README.md."
        )


def _value_rules(t: SourceTable) -> list[tuple[str, str, str]]:
    """(column, SQL condition that flags a bad row, reason). Conditions see typed columns
    and the raw text `__txt_<col>` of timestamp columns."""
    rules: list[tuple[str, str, str]] = []
    for c in t.columns:
        if c.type == "TIMESTAMPTZ":
            rules.append((
                c.name,
                f"\"__txt_{c.name}\" is not null and trim(\"__txt_{c.name}\") <> '' "
                f"and \"{c.name}\" is null",
                "unparseable timestamp",
            ))
        if not c.nullable:
            null_cond = (
                f"(\"__txt_{c.name}\" is null or trim(\"__txt_{c.name}\") = '')"
                if c.type == "TIMESTAMPTZ" else f'"{c.name}" is null'
            )
            if c.type == "VARCHAR":
                null_cond = f"(\"{c.name}\" is null or trim(\"{c.name}\") = '')"
            rules.append((c.name, null_cond, "missing required value"))
    if t.event_time:
        col = next(c for c in t.columns if c.name == t.event_time)
        if col.type == "TIMESTAMPTZ":
            cond = f"\"{col.name}\" >= (_file_date + interval 1 day)::timestamp at time zone 'UTC'"
        else:
            cond = f'"{col.name}" > _file_date'
        rules.append((col.name, cond, "event time after the file's landing day (future timestamp)"))
    if t.raw_name == "crm__order_lines":
        # a negative quantity is a credit note's returned line (stg_crm__credit_note_returns)
        rules.append(("quantity", "quantity = 0", "quantity must not be 0"))
    elif "quantity" in t.column_names:
        rules.append(("quantity", "quantity <= 0", "quantity must be positive"))
    return rules


def _load_files(
    con: duckdb.DuckDBPyConnection,
    t: SourceTable,
    files: list[tuple[Path, dt.date, str, str]],
) -> tuple[int, int]:
    """Load files (path, date, rel, sha) of one table in one scan. Returns (loaded, quarantined)."""
    rels = [rel for _, _, rel, _ in files]
    con.execute(f"delete from raw.{t.raw_name} where _file in (select unnest(?))", [rels])
    con.execute(
        "delete from raw.quarantine where raw_table = ? and file in (select unnest(?))",
        [t.raw_name, rels],
    )
    con.execute(
        "delete from raw.ingested_files where raw_table = ? and file in (select unnest(?))",
        [t.raw_name, rels],
    )
    con.execute("drop table if exists temp.__files")
    con.execute("create temp table __files (path varchar, rel varchar, file_date date, "
                "sha varchar, size_bytes bigint, mtime_ns bigint)")
    con.executemany(
        "insert into temp.__files values (?, ?, ?, ?, ?, ?)",
        [(str(p), rel, d, sha, *_stat(p)) for p, d, rel, sha in files],
    )
    columns = {c.name: _sql_type(c.type) for c in t.columns}
    con.execute("drop table if exists temp.__rej_errors")
    con.execute("drop table if exists temp.__rej_scans")
    con.execute("drop table if exists temp.__scan")
    # One scan over all files; rejected rows land in DuckDB's reject tables with their line.
    con.execute(
        """
        create temp table __scan as
        select *, row_number() over () as __rn
        from read_csv(?, header = true, columns = ?, filename = true, union_by_name = false,
                      store_rejects = true, rejects_table = '__rej_errors',
                      rejects_scan = '__rej_scans', auto_detect = false, quote = '"',
                      escape = '"', null_padding = false, strict_mode = true)
        """,
        [[str(p) for p, _, _, _ in files], columns],
    )
    # The rejected lines, with DuckDB's reasons (a line can carry several errors).
    con.execute(
        """
        create or replace temp table __rejected as
        select distinct f.rel, e.line, e.column_name, e.error_type::varchar as error_type,
               e.error_message, e.csv_line
        from __rej_errors e
        join __rej_scans s using (scan_id, file_id)
        join __files f on f.path = s.file_path
        """
    )
    # Physical line of every accepted row without enumerating every line of every file:
    # the k-th accepted row of a file (k from 0, scan order) is line k + 2 + j, where j is
    # the number of rejected lines before it. Rejected line r_i (the i-th in the file) has
    # r_i - 1 - i accepted lines before it, so j is the largest i with r_i - 1 - i <= k: an
    # ASOF join on the (few) rejected lines. (Enumerating and anti-joining every line cost
    # most of a cold 1M-customer ingest.)
    con.execute(
        """
        create or replace temp table __rej_idx as
        with r as (
            select f.path, r.line,
                   row_number() over (partition by f.path order by r.line) as i
            from (select distinct rel, line from __rejected) r
            join __files f on f.rel = r.rel
        )
        select path, line - 1 - i as accepted_before, max(i) as n_before
        from r group by all
        """
    )
    select_cols = []
    for c in t.columns:
        if c.type == "TIMESTAMPTZ":
            select_cols.append(f'try_cast(s."{c.name}" as timestamptz) as "{c.name}"')
            select_cols.append(f's."{c.name}" as "__txt_{c.name}"')
        else:
            select_cols.append(f's."{c.name}"')
    rules = _value_rules(t)
    case = " ".join(f"when {cond} then {i}" for i, (_, cond, _) in enumerate(rules))
    rule_expr = f"case {case} else null end" if rules else "null::integer"
    # Inside the load's transaction the temp tables have no row estimates (~0 rows), and
    # DuckDB then runs an ASOF join as a nested loop (asof_loop_join_threshold, 64 rows):
    # minutes on a 3.6M-row file set instead of a second. Force the ASOF operator.
    con.execute("set asof_loop_join_threshold = 0")
    con.execute(
        f"""
        create or replace temp table __typed as
        with first_row as (
            select filename, min(__rn) as first_rn from __scan group by filename
        ), k as (
            select s.*, s.__rn - p.first_rn as __k
            from __scan s join first_row p using (filename)
        ), typed as (
            select {", ".join(select_cols)}, f.rel as _file, f.file_date as _file_date,
                   s.__k + 2 + coalesce(ri.n_before, 0) as _line
            from k s
            join __files f on f.path = s.filename
            asof left join __rej_idx ri on ri.path = s.filename and s.__k >= ri.accepted_before
        )
        select *, {rule_expr} as __rule from typed
        """
    )
    con.execute("reset asof_loop_join_threshold")
    names = ", ".join(f'"{c}"' for c in t.column_names)
    con.execute(
        f"insert into raw.{t.raw_name} ({names}, _file, _file_date, _line) "
        f"select {names}, _file, _file_date, _line from __typed where __rule is null"
    )
    rule_rows = [(i, col, reason) for i, (col, _, reason) in enumerate(rules)]
    if rule_rows:
        con.execute("create or replace temp table __rules (i integer, col varchar, reason varchar)")
        con.executemany("insert into __rules values (?, ?, ?)", rule_rows)
        record = ", ".join(
            f"'{c.name}', t.\"__txt_{c.name}\"" if c.type == "TIMESTAMPTZ"
            else f"'{c.name}', t.\"{c.name}\""
            for c in t.columns
        )
        con.execute(
            f"""
            insert into raw.quarantine
            select ?, t._file, t._line, r.col, r.reason, 'quarantined',
                   json_object({record})::varchar
            from __typed as t join __rules as r on r.i = t.__rule
            """,
            [t.raw_name],
        )
    con.execute(
        """
        insert into raw.quarantine
        select ?, rel, line, min(column_name), string_agg(distinct error_type || ': ' ||
               error_message, ' | '), 'quarantined', min(csv_line)
        from __rejected group by rel, line
        """,
        [t.raw_name],
    )
    con.execute(
        f"""
        insert into raw.ingested_files
        select ?, f.rel, f.file_date, f.sha,
               (select count(*) from raw.{t.raw_name} r where r._file = f.rel),
               (select count(*) from raw.quarantine q where q.raw_table = ? and q.file = f.rel),
               f.size_bytes, f.mtime_ns
        from __files f
        """,
        [t.raw_name, t.raw_name],
    )
    loaded, quarantined = con.execute(
        "select sum(rows_loaded), sum(rows_quarantined) from raw.ingested_files "
        "where raw_table = ? and file in (select unnest(?))",
        [t.raw_name, rels],
    ).fetchone()
    return int(loaded or 0), int(quarantined or 0)


def ingest_partition(
    con: duckdb.DuckDBPyConnection, raw_root: Path, as_of: dt.date
) -> dict[str, TableResult]:
    """Load every source file landed by `as_of` that is new or changed. Idempotent."""
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    ensure_schema(con)
    results: dict[str, TableResult] = {}
    # Check every header before loading anything, so a bad file stops the run early.
    plan: dict[str, list[tuple[Path, dt.date, str, str]]] = {}
    for t in TABLES:
        files = landed_files(raw_root, t, as_of)
        if not files and not t.optional:
            raise IngestError(
                f"required source {t.source}/{t.table}: no files landed by {as_of} under "
                f"{t.source}/{t.table}/ (expected <YYYY-MM-DD>.csv daily drops)"
            )
        known = {
            file: (sha, size, mtime) for file, sha, size, mtime in con.execute(
                "select file, sha256, size_bytes, mtime_ns from raw.ingested_files "
                "where raw_table = ?", [t.raw_name]).fetchall()
        }
        todo, touched = [], []
        for p, d in files:
            rel = f"{t.source}/{t.table}/{p.name}"
            before, stat = known.get(rel), _stat(p)
            # A loaded file whose size and modification time are what they were when it was
            # hashed is not read again: hashing every landed file each night read the whole
            # history (5 GB, 11 s of a 27 s ingest at 1,000,000 customers). Otherwise the
            # content hash decides: a rewritten file is reloaded, a merely touched one is not.
            if before is not None and before[1:] == stat:
                continue
            sha = _sha256(p)
            if before is not None and before[0] == sha:
                touched.append((*stat, t.raw_name, rel))
                continue
            check_header(p, t, rel)
            todo.append((p, d, rel, sha))
        plan[t.raw_name] = todo
        if touched:  # same content: remember the new stat so the next night skips it
            con.executemany("update raw.ingested_files set size_bytes = ?, mtime_ns = ? "
                            "where raw_table = ? and file = ?", touched)
    for t in TABLES:
        files = landed_files(raw_root, t, as_of)
        todo = plan[t.raw_name]
        con.execute("begin transaction")
        try:
            loaded, quarantined = _load_files(con, t, todo) if todo else (0, 0)
            n_rows = con.execute(
                f"select count(*) from raw.{t.raw_name} where _file_date <= ?", [as_of]
            ).fetchone()[0]
            note = None if files else "absent: no files landed for this optional source"
            con.execute(
                "insert or replace into raw.source_status values (?, ?, ?, ?, ?, ?)",
                [as_of, t.raw_name, bool(files), len(files), n_rows, note],
            )
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
        results[t.raw_name] = TableResult(
            t.raw_name, bool(files), len(files), len(todo), loaded, quarantined, n_rows
        )
    loaded_dates = [d for todo in plan.values() for _, d, _, _ in todo]
    if loaded_dates:
        invalidate_features(con, min(loaded_dates))
    return results


def invalidate_features(con: duckdb.DuckDBPyConnection, first_changed: dt.date) -> int:
    """Features at date c read every file landed by c, and the feature mart keeps the dates it
    already built (they cannot change: later files are invisible to them). A file landed on
    or before an already-built date that is loaded now (a corrected or late-dropped file)
    changes what those dates should have seen, so their rows are deleted here and rebuilt by
    the next dbt run. Returns the number of feature dates invalidated."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'marts' and table_name = 'customer_features'"
    ).fetchone()[0]
    if not exists:
        return 0
    n = con.execute(
        "select count(distinct as_of_date) from marts.customer_features where as_of_date >= ?",
        [first_changed],
    ).fetchone()[0]
    if n:
        con.execute("delete from marts.customer_features where as_of_date >= ?", [first_changed])
    return int(n)
