"""Ingest landed source files into DuckDB `raw` tables, with a quarantine for bad rows.

Pure functions over a DuckDB connection (no Dagster import). For a partition date D:

* every file ``<raw_root>/<source>/<table>/<YYYY-MM-DD>.csv`` with a landing date <= D that is
  not yet loaded, or whose content changed, is (re)loaded: its old rows are deleted first, so
  re-running a partition replaces and never duplicates. Files landed after D are not read.
  A loaded file is hashed again only when its size or modification time changed.
* columns are bound **by name** from each file's header, in any order. A file missing a required
  column, or naming a column twice, stops the run with an `IngestError` naming file and column.
  A column the contract does not know is ignored and recorded (``raw.ingested_files.
  ignored_columns``, the asset's metadata): an export that gained a column keeps loading.
* rows DuckDB's CSV reader rejects (wrong field count, a value that does not cast) go to
  ``raw.quarantine`` with file, line, column and DuckDB's reason (its own reject tables).
* rows that parse but break a value rule (unparseable or future timestamp, missing required
  value, non-positive quantity) go to ``raw.quarantine`` with the rule as reason.
* a file whose rows mostly fail stops the run instead of quietly losing a day (file rules,
  `FileRules`): every row of a file rejected for one cause (or for any causes, in a file of
  MIN_ROWS_FOR_SHARE rows or more); one column failing its
  cast on more than DS_MAX_CAST_FAILURE_SHARE of a file's rows (a retyped column); more than
  DS_MAX_QUARANTINE_SHARE of a required source's file quarantined (an optional source's file
  is loaded and warned about). The shares apply to files of at least MIN_ROWS_FOR_SHARE rows.
* an optional source with no files is recorded as absent in ``raw.source_status`` and gets an
  empty table with the contract's columns, so dbt builds on CRM data alone.
* a file whose name looks like a landing day but is not a date (``2026-02-30.csv``) stops the
  run naming it: it cannot be placed in time, and skipping it would lose its rows.

Line numbers are physical lines (header = line 1), also in files whose quoted values hold
newlines: DuckDB numbers records, and a file with more lines than records is corrected by
the newlines inside the records before each row.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .contract import DATE_FILE, TABLES, SourceTable



class IngestError(RuntimeError):
    """Input the pipeline cannot load; the message names file, row and column."""


MIN_ROWS_FOR_SHARE = 20  # below this a share says little: 1 bad row of 3 is a row defect


@dataclass(frozen=True)
class FileRules:
    """When a file's bad rows stop the run rather than go to quarantine (module docstring)."""

    max_cast_failure_share: float = 0.10
    max_quarantine_share: float = 0.25
    min_rows_for_share: int = MIN_ROWS_FOR_SHARE

    @classmethod
    def from_env(cls) -> FileRules:
        def share(name: str, default: float) -> float:
            raw = os.environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise IngestError(f"{name}={raw!r}: expected a share between 0 and 1") from None
            if not 0 <= value <= 1:
                raise IngestError(f"{name}={raw!r}: expected a share between 0 and 1")
            return value

        return cls(share("DS_MAX_CAST_FAILURE_SHARE", cls.max_cast_failure_share),
                   share("DS_MAX_QUARANTINE_SHARE", cls.max_quarantine_share))


@dataclass(frozen=True)
class TableResult:
    raw_name: str
    present: bool
    files_total: int
    files_loaded: int
    rows_loaded: int
    rows_quarantined: int
    rows_in_table: int
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)  # file -> columns
    warnings: list[str] = field(default_factory=list)


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
    ignored_columns varchar,  -- header columns the contract does not know (comma-separated)
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


INTEGER_RANGE = {"INTEGER": 2**31 - 1, "BIGINT": 2**63 - 1}


def _read_type(col_type: str) -> str:
    # Timestamps are read as text and parsed by us: DuckDB 1.5 turns an unparseable
    # TIMESTAMPTZ into NULL silently instead of rejecting the row (PITFALLS.md).
    if col_type == "TIMESTAMPTZ":
        return "VARCHAR"
    # Whole numbers are read as DOUBLE and checked: DuckDB casts '2.5' to INTEGER 3.
    if col_type in INTEGER_RANGE:
        return "DOUBLE"
    return col_type


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    con.execute(QUARANTINE_DDL)
    con.execute(FILES_DDL)
    for col, typ in (("size_bytes", "bigint"), ("mtime_ns", "bigint"),
                     ("ignored_columns", "varchar")):  # warehouses created before these columns
        con.execute(f"alter table raw.ingested_files add column if not exists {col} {typ}")
    con.execute(STATUS_DDL)
    for t in TABLES:
        cols = ", ".join(f'"{c.name}" {c.type}' for c in t.columns)
        con.execute(
            f"create table if not exists raw.{t.raw_name} ({cols}, "
            "_file varchar not null, _file_date date not null, _line bigint not null)"
        )
    # marketing_consent was BOOLEAN: a withdrawal written as text ('opt-out') was quarantined,
    # so the older consented version won. It is kept as landed now and read in staging.
    old = con.execute(
        "select data_type from information_schema.columns where table_schema = 'raw' and "
        "table_name = 'crm__customers' and column_name = 'marketing_consent'").fetchone()
    if old and old[0] != "VARCHAR":
        con.execute("alter table raw.crm__customers alter marketing_consent type varchar")


def landed_files(raw_root: Path, t: SourceTable, as_of: dt.date) -> list[tuple[Path, dt.date]]:
    folder = raw_root / t.source / t.table
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        m = DATE_FILE.match(p.name)
        if m:
            try:
                d = dt.date.fromisoformat(m.group(1))
            except ValueError:
                raise IngestError(
                    f"{t.source}/{t.table}/{p.name}: the file name is not a calendar date, so "
                    f"its landing day is unknown and its rows cannot be placed in time. Rename "
                    f"it to the day it landed (<YYYY-MM-DD>.csv) or move it out of "
                    f"{t.source}/{t.table}/."
                ) from None
            if d <= as_of:
                out.append((p, d))
    return out


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class Digest:
    sha256: str
    lines: int  # physical lines, header included (a last line without a newline counts)


def _digest(path: Path) -> Digest:
    """The content hash and the physical line count, in one read of the file."""
    h = hashlib.sha256()
    newlines, last = 0, b""
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            newlines += chunk.count(b"\n")
            last = chunk
    return Digest(h.hexdigest(), newlines + (1 if last and not last.endswith(b"\n") else 0))


def check_header(path: Path, t: SourceTable, rel: str) -> list[str]:
    """The file's column names (stripped), checked: every required column present, none
    twice. Columns are bound by these names, so their order is free."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except UnicodeDecodeError as e:
        raise IngestError(f"{rel}: line 1 is not UTF-8 text ({e.reason} at byte {e.start}); "
                          f"export the file as UTF-8") from None
    header = [h.strip() for h in header]
    missing = [c.name for c in t.columns if c.required and c.name not in header]
    if missing:
        raise IngestError(
            f"{rel}: required column {', '.join(repr(m) for m in missing)} missing from the "
            f"header (line 1); found columns {header}. Fix the export or rename the column; "
            f"the contract is in data/README.md."
        )
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise IngestError(
            f"{rel}: column {', '.join(repr(c) for c in twice)} appears more than once in the "
            f"header (line 1), so its values are ambiguous; found columns {header}."
        )
    return header


# The UTC offset at the end of an ISO-8601 time: sign, hours, minutes (+05:30, +0530, +05).
OFFSET_RE = r"[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*([+-])(\d{2}):?(\d{2})?$"


def _value_rules(t: SourceTable) -> list[tuple[str, str, str]]:
    """(column, SQL condition that flags a bad row, reason). Conditions see typed columns
    and the raw text `__txt_<col>` of timestamp columns."""
    rules: list[tuple[str, str, str]] = []
    for c in t.columns:
        if c.type in INTEGER_RANGE:  # read as DOUBLE (see _read_type)
            rules.append((c.name, f'"{c.name}" <> trunc("{c.name}")',
                          f"not a whole number ({c.name} is {c.type})"))
            rules.append((c.name, f'abs("{c.name}") > {INTEGER_RANGE[c.type]}',
                          f"out of range for {c.type}"))
        if c.type == "TIMESTAMPTZ":
            # DuckDB accepts any two-digit offset (+25:00 loads as a shifted UTC time); real
            # offsets lie within -12:00..+14:00 with minutes < 60.
            txt = f'"__txt_{c.name}"'
            hh = f"try_cast(nullif(regexp_extract({txt}, '{OFFSET_RE}', 2), '') as integer)"
            mm = f"try_cast(nullif(regexp_extract({txt}, '{OFFSET_RE}', 3), '') as integer)"
            sign = f"regexp_extract({txt}, '{OFFSET_RE}', 1)"
            rules.append((
                c.name,
                f"({hh} > 14 or ({sign} = '-' and {hh} > 12) or {mm} >= 60)",
                "impossible UTC offset (real offsets lie within -12:00..+14:00)",
            ))
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
    files: list[PlannedFile],
    file_rules: FileRules,
) -> tuple[int, int, list[str]]:
    """Load the planned files of one table, one scan per distinct header. Returns (loaded,
    quarantined, warnings); raises IngestError when a file rule (FileRules) is broken."""
    rels = [f.rel for f in files]
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
                "sha varchar, size_bytes bigint, mtime_ns bigint, lines bigint, "
                "ignored varchar)")
    con.executemany(
        "insert into temp.__files values (?, ?, ?, ?, ?, ?, ?, ?)",
        [(str(f.path), f.rel, f.date, f.digest.sha256, *_stat(f.path), f.digest.lines,
          ", ".join(f.ignored) or None) for f in files],
    )
    read_types = {c.name: _read_type(c.type) for c in t.columns}
    for name in ("__rej_errors", "__rej_scans", "__scan"):
        con.execute(f"drop table if exists temp.{name}")
    cols = ", ".join(f'"{c}" {typ}' for c, typ in read_types.items())
    con.execute(f"create temp table __scan ({cols}, filename varchar, __rn bigint)")
    # Columns are bound by the header's names: read_csv's `columns` gives each position of
    # this header its name and type (DuckDB itself binds by position), the select picks the
    # contract's columns by name. Rejected rows land in DuckDB's reject tables (appended per
    # scan) with their record number.
    by_header: dict[tuple[str, ...], list[PlannedFile]] = {}
    for f in files:
        by_header.setdefault(tuple(f.header), []).append(f)
    for header, group in by_header.items():
        columns = {h: read_types.get(h, "VARCHAR") for h in header}
        pick = ", ".join(f'"{c}"' if c in columns else f'null::{typ} as "{c}"'
                         for c, typ in read_types.items())
        offset = con.execute("select coalesce(max(__rn), 0) from __scan").fetchone()[0]
        con.execute(
            f"""
            insert into __scan
            select {pick}, filename, row_number() over () + {int(offset)}
            from read_csv(?, header = true, columns = ?, filename = true,
                          union_by_name = false, store_rejects = true,
                          rejects_table = '__rej_errors', rejects_scan = '__rej_scans',
                          auto_detect = false, quote = '"', escape = '"',
                          null_padding = false, strict_mode = true)
            """,
            [[str(f.path) for f in group], columns],
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
    _physical_lines(con, t)
    warnings = _check_file_rules(con, t, file_rules, rules)
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
               f.size_bytes, f.mtime_ns, f.ignored
        from __files f
        """,
        [t.raw_name, t.raw_name],
    )
    loaded, quarantined = con.execute(
        "select sum(rows_loaded), sum(rows_quarantined) from raw.ingested_files "
        "where raw_table = ? and file in (select unnest(?))",
        [t.raw_name, rels],
    ).fetchone()
    return int(loaded or 0), int(quarantined or 0), warnings


def _physical_lines(con: duckdb.DuckDBPyConnection, t: SourceTable) -> None:
    """Turn DuckDB's record numbers into physical lines where a file has more lines than
    records (quoted values holding newlines): each row moves down by the newlines inside the
    records before it. Files without such values (the usual case) cost one comparison."""
    con.execute(
        """
        create or replace temp table __multi as
        select f.rel from __files f
        left join (select _file, count(*) as n from __typed group by 1) a on a._file = f.rel
        left join (select rel, count(distinct line) as n from __rejected group by 1) r
               on r.rel = f.rel
        where f.lines - 1 > coalesce(a.n, 0) + coalesce(r.n, 0)
        """
    )
    if not con.execute("select count(*) from __multi").fetchone()[0]:
        return
    text_cols = [f'"{c.name}"' for c in t.columns if c.type == "VARCHAR"]
    text_cols += [f'"__txt_{c.name}"' for c in t.columns if c.type == "TIMESTAMPTZ"]
    nl = " + ".join(f"coalesce(length({c}) - length(replace({c}, chr(10), '')), 0)"
                    for c in text_cols) or "0"
    con.execute(
        f"""
        create or replace temp table __extra as
        select _file as rel, _line as line, {nl} as extra from __typed
        where _file in (select rel from __multi)
        union all
        select rel, line, max(length(csv_line) - length(replace(csv_line, chr(10), '')))
        from __rejected where rel in (select rel from __multi) group by all
        """
    )
    con.execute("delete from __extra where extra = 0")
    shift = ("(select coalesce(sum(e.extra), 0) from __extra e "
             "where e.rel = {file} and e.line < {line})")
    con.execute(f"update __typed set _line = _line + "
                f"{shift.format(file='__typed._file', line='__typed._line')} "
                f"where _file in (select rel from __multi)")
    con.execute(f"update __rejected set line = line + "
                f"{shift.format(file='__rejected.rel', line='__rejected.line')} "
                f"where rel in (select rel from __multi)")


def _check_file_rules(con: duckdb.DuckDBPyConnection, t: SourceTable, file_rules: FileRules,
                      value_rules: list[tuple[str, str, str]]) -> list[str]:
    """Stop the run on a file whose rows mostly fail (module docstring); returns warnings for
    an optional source's file over the quarantine share."""
    # bad rows per file, and how many distinct (column, reason) causes they have
    stats = con.execute(
        """
        with bad as (
            select _file as rel, __rule::varchar as cause from __typed where __rule is not null
            union all
            select rel, any_value(coalesce(column_name, '') || error_type) from __rejected
            group by rel, line
        ), per_file as (
            select rel, count(*) as bad, count(distinct cause) as causes from bad group by 1
        ), parsed as (
            select _file as rel, count(*) as n from __typed group by 1
        ), rejected as (
            select rel, count(distinct line) as n from __rejected group by 1
        )
        select f.rel, coalesce(p.n, 0) + coalesce(r.n, 0) as total, coalesce(b.bad, 0),
               coalesce(b.causes, 0)
        from __files f left join parsed p on p.rel = f.rel left join rejected r on r.rel = f.rel
        left join per_file b on b.rel = f.rel
        order by f.rel
        """
    ).fetchall()
    casts = con.execute(
        """
        select rel, column_name, count(distinct line) as n, min(line) as first_line,
               arg_min(csv_line, line) as example
        from __rejected where error_type = 'CAST' group by all order by rel, n desc
        """
    ).fetchall()
    con.execute("create or replace temp table __rule_names (i integer, reason varchar)")
    if value_rules:
        con.executemany("insert into __rule_names values (?, ?)",
                        [(i, reason) for i, (_, _, reason) in enumerate(value_rules)])
    reasons = dict(con.execute(
        """
        select rel, string_agg(reason || ' (' || n || ')', '; ' order by n desc) from (
            select rel, split_part(error_type || ': ' || error_message, '.', 1) as reason,
                   count(distinct line) as n
            from __rejected group by all
            union all
            select t._file, r.reason, count(*) from __typed t
            join __rule_names r on r.i = t.__rule group by all
        ) group by rel
        """
    ).fetchall())
    totals = {rel: total for rel, total, _, _ in stats}
    where = ("Fix the export (data/README.md describes each column), or raise the "
             "threshold for a file that is known to be this bad")
    for rel, total, bad, causes in stats:
        # a whole file rejected: all its rows for one cause (a changed export), or all rows
        # of a file large enough that chance cannot explain it
        if total >= 2 and bad == total and (causes == 1 or total >= file_rules.min_rows_for_share):
            raise IngestError(
                f"{rel}: every one of its {total} rows was rejected ({reasons.get(rel)}); a "
                f"whole file failing is a changed export, not bad rows, so the run stops "
                f"rather than lose the file. Fix the export (data/README.md describes each "
                f"column)."
            )
    for rel, column, n, first_line, example in casts:
        total = totals.get(rel, 0)
        if total >= file_rules.min_rows_for_share and n / total > file_rules.max_cast_failure_share:
            raise IngestError(
                f"{rel}: column {column!r} fails its type on {n} of {total} rows "
                f"({n / total:.0%}, first at line {first_line}: {example!r}); the column looks "
                f"retyped, so the run stops rather than quarantine the file. {where} "
                f"(DS_MAX_CAST_FAILURE_SHARE, now {file_rules.max_cast_failure_share:g})."
            )
    warnings = []
    for rel, total, bad, _ in stats:
        if total >= file_rules.min_rows_for_share and bad / total > file_rules.max_quarantine_share:
            msg = (f"{rel}: {bad} of {total} rows quarantined ({bad / total:.0%}, more than "
                   f"DS_MAX_QUARANTINE_SHARE {file_rules.max_quarantine_share:g}): "
                   f"{reasons.get(rel)}")
            if not t.optional:
                raise IngestError(f"{msg}. {t.raw_name} is a required source, so the run stops "
                                  f"rather than build on a fraction of the file. {where}.")
            warnings.append(f"{msg}; loaded anyway: {t.raw_name} is an optional source")
    return warnings


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    date: dt.date
    rel: str  # <source>/<table>/<name>, how the file is named in raw tables and messages
    digest: Digest
    header: list[str]
    ignored: list[str]  # header columns the contract does not know


def ingest_partition(
    con: duckdb.DuckDBPyConnection, raw_root: Path, as_of: dt.date,
    file_rules: FileRules | None = None,
) -> dict[str, TableResult]:
    """Load every source file landed by `as_of` that is new or changed. Idempotent."""
    file_rules = FileRules.from_env() if file_rules is None else file_rules
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    ensure_schema(con)
    results: dict[str, TableResult] = {}
    # Check every header before loading anything, so a bad file stops the run early.
    plan: dict[str, list[PlannedFile]] = {}
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
            digest = _digest(p)
            if before is not None and before[0] == digest.sha256:
                touched.append((*stat, t.raw_name, rel))
                continue
            header = check_header(p, t, rel)
            known_cols = set(t.column_names)
            todo.append(PlannedFile(p, d, rel, digest, header,
                                    [h for h in header if h not in known_cols]))
        plan[t.raw_name] = todo
        if touched:  # same content: remember the new stat so the next night skips it
            con.executemany("update raw.ingested_files set size_bytes = ?, mtime_ns = ? "
                            "where raw_table = ? and file = ?", touched)
    for t in TABLES:
        files = landed_files(raw_root, t, as_of)
        todo = plan[t.raw_name]
        con.execute("begin transaction")
        try:
            loaded, quarantined, warnings = (
                _load_files(con, t, todo, file_rules) if todo else (0, 0, []))
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
            t.raw_name, bool(files), len(files), len(todo), loaded, quarantined, n_rows,
            ignored_columns={f.rel: f.ignored for f in todo if f.ignored},
            warnings=warnings,
        )
    loaded_dates = [f.date for todo in plan.values() for f in todo]
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
