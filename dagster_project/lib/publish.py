"""Write-audit-publish in DuckDB.

1. `write_candidate` writes a frame to ``audit.<name>__<yyyymmdd>__<run8>`` and records it
   (row count, content hash) in ``audit.candidates``.
2. The quality suites run on the candidate read back from DuckDB (`read_candidate`) and
   `record_gate` stores each suite's result for that exact version in ``audit.gate_results``.
3. `publish` refuses unless every required suite passed for exactly that version and the
   candidate's content still hashes to what was recorded. Then, in ONE transaction, it copies
   each candidate to ``published.<version>``, points the view ``published.<name>`` at the
   newest as_of_date published, replaces the partition in ``published.<name>_history`` and
   appends ``published.publish_log``. After COMMIT it reads everything back and raises if
   what readers see is not what was meant to be published.

Why this shape (PITFALLS.md): DuckDB schemas cannot be renamed, so publishing swaps views onto
versioned tables inside one transaction (a kill before COMMIT leaves the old version whole, a
kill after COMMIT the new one); and a failed statement inside a transaction makes COMMIT
return without error while rolling everything back -- hence no exception is ever swallowed
inside the transaction and the result is read back after COMMIT.

Retention: superseded ``published.<version>`` tables are kept until lib/retention.py prunes
old partitions (never a version a view points at; the history tables hold the same rows).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from .quality import SuiteResult
from .schemas import column_types
from .warehouse import align_columns, table_exists

AUDIT = "audit"
PUBLISHED = "published"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

FaultHook = Callable[[str], None]  # called with a point name; tests inject faults with it


class PublishRefused(RuntimeError):
    """The publish preconditions do not hold (gate missing/failed, content changed)."""


class PublishError(RuntimeError):
    """Publishing failed or the read-back does not match what was published."""


@dataclass(frozen=True)
class CandidateVersion:
    version: str
    name: str
    as_of_date: dt.date
    run_id: str
    row_count: int
    content_hash: str

    def __str__(self) -> str:  # usable wherever a version id string is expected
        return self.version


# --------------------------------------------------------------------------- helpers
def _date(as_of) -> dt.date:
    if isinstance(as_of, dt.datetime):
        return as_of.date()
    if isinstance(as_of, dt.date):
        return as_of
    return dt.date.fromisoformat(str(as_of)[:10])


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid table name {name!r} (lower-case letters, digits, _)")
    return name


def version_id(name: str, as_of, run_id: str) -> str:
    run8 = re.sub(r"[^a-z0-9]", "", str(run_id).lower())[:8]
    if not run8:
        raise ValueError(f"run_id {run_id!r} gives an empty run8")
    return f"{_check_name(name)}__{_date(as_of):%Y%m%d}__{run8}"


def q(*parts: str) -> str:
    """Quoted qualified identifier."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def ensure_schemas(con) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {AUDIT}")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {PUBLISHED}")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {AUDIT}.candidates (
        version VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, as_of_date DATE NOT NULL,
        run_id VARCHAR NOT NULL, row_count BIGINT NOT NULL, content_hash VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {AUDIT}.gate_results (
        version VARCHAR NOT NULL, suite VARCHAR NOT NULL, success BOOLEAN NOT NULL,
        n_expectations INTEGER NOT NULL, n_failed INTEGER NOT NULL, summary VARCHAR,
        result_json VARCHAR, checked_at TIMESTAMP NOT NULL)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {PUBLISHED}.versions (
        name VARCHAR NOT NULL, as_of_date DATE NOT NULL, version VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL, row_count BIGINT NOT NULL, content_hash VARCHAR NOT NULL,
        published_at TIMESTAMP NOT NULL, PRIMARY KEY (name, as_of_date))""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {PUBLISHED}.publish_log (
        as_of_date DATE NOT NULL, run_id VARCHAR NOT NULL, versions VARCHAR NOT NULL,
        published_at TIMESTAMP NOT NULL)""")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def content_hash(con, relation: str, exclude: Sequence[str] = ()) -> str:
    """sha256 over the schema and the rows in a canonical order.

    Each row is rendered with DuckDB's ``to_json`` (quoted strings, round-trip floats), the
    row digests are sorted (a total order, so the result does not depend on storage order or
    on ties in the key) and hashed together with the column names and types.
    `relation` is an already-quoted relation name.
    """
    cols = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    keep = [(c[0], c[1]) for c in cols if c[0] not in set(exclude)]
    if not keep:
        raise ValueError(f"{relation}: no columns to hash")
    struct = ", ".join(f"{q(n)} := {q(n)}" for n, _ in keep)
    digest = con.execute(
        f"SELECT sha256(coalesce(string_agg(h, '\n' ORDER BY h), '')) FROM "
        f"(SELECT sha256(to_json(struct_pack({struct}))::VARCHAR) AS h FROM {relation})"
    ).fetchone()[0]
    schema = json.dumps(keep)
    import hashlib

    return hashlib.sha256((schema + "\n" + digest).encode()).hexdigest()


def row_count(con, relation: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0])


def _in_transaction(con, body: Callable[[], None]) -> None:
    """Run `body` in one transaction; any error rolls back and propagates (never swallowed)."""
    con.execute("BEGIN TRANSACTION")
    try:
        body()
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001, S110 -- txn may be aborted; the original error wins
            pass
        raise
    con.execute("COMMIT")


# --------------------------------------------------------------------------- audit
def write_candidate(con, name: str, frame: pd.DataFrame, as_of, run_id: str,
                    key: Sequence[str] = ("customer_id",)) -> CandidateVersion:
    """Write `frame` to ``audit.<name>__<yyyymmdd>__<run8>`` and record it.

    Rewriting the same version (a retried step of the same run) replaces it. `key` is only
    validated to exist; the content hash is order-independent (see `content_hash`).
    """
    ensure_schemas(con)
    version = version_id(name, as_of, run_id)
    missing = [k for k in key if k not in frame.columns]
    if missing:
        raise ValueError(f"{name}: key column(s) {missing} not in frame")
    rel = q(AUDIT, version)
    view_name = f"_candidate_frame_{version}"

    # the declared types (lib/schemas.py), not the frame's: a column NULL tonight (an absent
    # model's drivers) would otherwise be INTEGER and tomorrow's text would not fit
    types = column_types(f"{PUBLISHED}.{name}", list(frame.columns))
    select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in types.items())

    def body():
        con.register(view_name, frame)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {rel} AS SELECT {select} FROM {q(view_name)}")
        finally:
            con.unregister(view_name)
        con.execute(f"DELETE FROM {AUDIT}.candidates WHERE version = ?", [version])
        con.execute(f"DELETE FROM {AUDIT}.gate_results WHERE version = ?", [version])
        con.execute(f"INSERT INTO {AUDIT}.candidates VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [version, name, _date(as_of), str(run_id), row_count(con, rel),
                     content_hash(con, rel), _now()])

    _in_transaction(con, body)
    cand = get_candidate(con, version)
    if cand is None or cand.row_count != len(frame):
        raise PublishError(f"candidate {version} not written as expected (read back {cand})")
    return cand


def get_candidate(con, version: str) -> CandidateVersion | None:
    row = con.execute(
        f"SELECT version, name, as_of_date, run_id, row_count, content_hash "
        f"FROM {AUDIT}.candidates WHERE version = ?", [str(version)]).fetchone()
    return CandidateVersion(*row) if row else None


def read_candidate(con, version) -> pd.DataFrame:
    """The candidate exactly as stored -- what the gate must check."""
    return con.execute(f"SELECT * FROM {q(AUDIT, str(version))}").df()


def record_gate(con, version, suite_name: str, result: SuiteResult) -> None:
    ensure_schemas(con)
    con.execute(
        f"INSERT INTO {AUDIT}.gate_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [str(version), suite_name, bool(result.success), int(result.n_expectations),
         int(result.n_failed), result.summary_text(), json.dumps(result.to_dict()), _now()])


def record_notes(con, version, notes: Mapping) -> None:
    """Side facts about a candidate that are not rows (e.g. identifiers that could not be
    normalised), kept in ``audit.candidate_notes`` for the publish step's manifest."""
    ensure_schemas(con)
    con.execute(f"CREATE TABLE IF NOT EXISTS {AUDIT}.candidate_notes ("
                f"version VARCHAR PRIMARY KEY, notes_json VARCHAR NOT NULL)")
    con.execute(f"INSERT OR REPLACE INTO {AUDIT}.candidate_notes VALUES (?, ?)",
                [str(version), json.dumps(notes, sort_keys=True, default=str)])


def candidate_notes(con, version) -> dict:
    if not table_exists(con, AUDIT, "candidate_notes"):
        return {}
    row = con.execute(f"SELECT notes_json FROM {AUDIT}.candidate_notes WHERE version = ?",
                      [str(version)]).fetchone()
    return json.loads(row[0]) if row else {}


def run_candidates(con, as_of, run_id: str) -> dict[str, str]:
    """{name: version} of the candidates written by `run_id` for `as_of`."""
    if not table_exists(con, AUDIT, "candidates"):
        return {}
    rows = con.execute(
        f"SELECT name, version FROM {AUDIT}.candidates WHERE as_of_date = ? AND run_id = ? "
        f"ORDER BY name", [_date(as_of), str(run_id)]).fetchall()
    return {n: v for n, v in rows}


def latest_gate_result(con, version, suite: str) -> dict | None:
    """The newest recorded result (``SuiteResult.to_dict()`` plus ``summary``) of `suite`
    for `version`, or None."""
    if not table_exists(con, AUDIT, "gate_results"):
        return None
    row = con.execute(
        f"SELECT result_json, summary FROM {AUDIT}.gate_results WHERE version = ? AND suite = ? "
        f"ORDER BY checked_at DESC LIMIT 1", [str(version), suite]).fetchone()
    if not row:
        return None
    out = json.loads(row[0]) if row[0] else {}
    out["summary"] = row[1]
    return out


def gate_passed(con, version, required_suites: Sequence[str]) -> tuple[bool, str]:
    """True only if every required suite has a passing row for exactly this version and
    no failing row for it."""
    version = str(version)
    if not required_suites:
        return False, f"{version}: no required suites given (an empty gate never passes)"
    if not table_exists(con, AUDIT, "gate_results"):
        return False, f"{version}: no gate results recorded"
    rows = con.execute(
        f"SELECT suite, bool_or(success), bool_or(NOT success) FROM {AUDIT}.gate_results "
        f"WHERE version = ? GROUP BY suite ORDER BY suite", [version]).fetchall()
    by_suite = {s: (ok, bad) for s, ok, bad in rows}
    reasons = []
    for suite in required_suites:
        if suite not in by_suite:
            reasons.append(f"suite {suite!r} has no result for {version}")
        elif by_suite[suite][1]:
            summary = con.execute(
                f"SELECT summary FROM {AUDIT}.gate_results WHERE version = ? AND suite = ? "
                f"AND NOT success ORDER BY checked_at DESC LIMIT 1", [version, suite]
            ).fetchone()[0]
            reasons.append(f"suite {suite!r} failed for {version}: {summary}")
        elif not by_suite[suite][0]:
            reasons.append(f"suite {suite!r} did not pass for {version}")
    if reasons:
        return False, "; ".join(reasons)
    return True, f"{version}: all of {list(required_suites)} passed"


# --------------------------------------------------------------------------- publish
def published_version(con, name: str, as_of=None) -> str | None:
    """Version behind ``published.<name>`` (as_of None) or published for that as_of."""
    if not table_exists(con, PUBLISHED, "versions"):
        return None
    if as_of is None:
        row = con.execute(
            f"SELECT version FROM {PUBLISHED}.versions WHERE name = ? "
            f"ORDER BY as_of_date DESC LIMIT 1", [name]).fetchone()
    else:
        row = con.execute(
            f"SELECT version FROM {PUBLISHED}.versions WHERE name = ? AND as_of_date = ?",
            [name, _date(as_of)]).fetchone()
    return row[0] if row else None


def previous_sizes(con, name: str, column: str, before=None) -> dict[str, int]:
    """Sizes by `column` of the last published version (strictly before `before` if given),
    for the size-change check. Empty when nothing is published."""
    if not table_exists(con, PUBLISHED, "versions"):
        return {}
    sql = f"SELECT version, as_of_date FROM {PUBLISHED}.versions WHERE name = ?"
    args: list = [name]
    if before is not None:
        sql += " AND as_of_date < ?"
        args.append(_date(before))
    row = con.execute(sql + " ORDER BY as_of_date DESC LIMIT 1", args).fetchone()
    if not row:
        return {}
    version, day = row
    if table_exists(con, PUBLISHED, version):
        source, where, params = q(PUBLISHED, version), "", []
    else:  # pruned by lib/retention.py: the history holds the same rows for that partition
        source, where, params = q(PUBLISHED, f"{name}_history"), "WHERE partition_date = ?", [day]
    rows = con.execute(
        f"SELECT {q(column)}, count(*) FROM {source} {where} GROUP BY 1 ORDER BY 1", params
    ).fetchall()
    return {str(k): int(v) for k, v in rows}


def publish(con, as_of, run_id: str, versions: Mapping[str, str],
            required_suites: Mapping[str, Sequence[str]],
            fault_hook: FaultHook | None = None) -> dict:
    """Publish the gated candidate `versions` ({name: version}) for `as_of` atomically.

    Raises PublishRefused (nothing touched) if a gate did not pass or a candidate changed;
    PublishError if the post-COMMIT read-back differs. Returns {name: version-now-current}.
    `fault_hook(point)` is called at "after_copy", "before_commit" and "after_commit"
    (fault-injection tests).
    """
    hook = fault_hook or (lambda point: None)
    as_of = _date(as_of)
    if not versions:
        raise PublishRefused("nothing to publish")
    ensure_schemas(con)

    # ---- preconditions (read-only); every problem is reported, not just the first
    cands: dict[str, CandidateVersion] = {}
    problems: list[str] = []
    for name, version in sorted(versions.items()):
        _check_name(name)
        version = str(version)
        cand = get_candidate(con, version)
        if cand is None:
            problems.append(f"{name}: candidate {version} not found in audit.candidates")
            continue
        if cand.name != name or cand.as_of_date != as_of:
            problems.append(f"{name}: candidate {version} is for {cand.name} "
                            f"{cand.as_of_date}, not {name} {as_of}")
            continue
        ok, reason = gate_passed(con, version, list(required_suites.get(name, ())))
        if not ok:
            problems.append(f"{name}: gate not passed: {reason}")
            continue
        if not table_exists(con, AUDIT, version):
            problems.append(f"{name}: audit table {version} is missing")
            continue
        now_hash = content_hash(con, q(AUDIT, version))
        if now_hash != cand.content_hash:
            problems.append(f"{name}: candidate {version} changed since it was audited "
                            f"(hash {now_hash[:12]} != recorded {cand.content_hash[:12]})")
            continue
        cands[name] = cand
    if problems:
        raise PublishRefused("; ".join(problems))

    published_at = _now()
    log_versions = json.dumps({n: c.version for n, c in sorted(cands.items())},
                              sort_keys=True)

    # ---- one transaction; nothing inside is ever swallowed
    def body():
        for name, cand in sorted(cands.items()):
            pub = q(PUBLISHED, cand.version)
            reuse = (table_exists(con, PUBLISHED, cand.version)
                     and content_hash(con, pub) == cand.content_hash)
            if not reuse:
                con.execute(f"CREATE OR REPLACE TABLE {pub} AS "
                            f"SELECT * FROM {q(AUDIT, cand.version)}")
            hook("after_copy")
            con.execute(f"DELETE FROM {PUBLISHED}.versions WHERE name = ? AND as_of_date = ?",
                        [name, as_of])
            con.execute(f"INSERT INTO {PUBLISHED}.versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [name, as_of, cand.version, str(run_id), cand.row_count,
                         cand.content_hash, published_at])
            # the view follows the newest as_of_date published: a backfill of an older date
            # lands in history but never moves the current view backwards
            current = con.execute(
                f"SELECT version FROM {PUBLISHED}.versions WHERE name = ? "
                f"ORDER BY as_of_date DESC LIMIT 1", [name]).fetchone()[0]
            con.execute(f"CREATE OR REPLACE VIEW {q(PUBLISHED, name)} AS "
                        f"SELECT * FROM {q(PUBLISHED, current)}")
            hist = q(PUBLISHED, f"{name}_history")
            con.execute(f"CREATE TABLE IF NOT EXISTS {hist} AS SELECT "
                        f"CAST(NULL AS DATE) AS partition_date, * FROM {pub} LIMIT 0")
            pub_types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {pub}").fetchall()}
            align_columns(con, hist, pub_types)  # a history typed by an older version
            con.execute(f"DELETE FROM {hist} WHERE partition_date = ?", [as_of])
            con.execute(f"INSERT INTO {hist} BY NAME SELECT CAST(? AS DATE) AS "
                        f"partition_date, * FROM {pub}", [as_of])
        con.execute(f"INSERT INTO {PUBLISHED}.publish_log VALUES (?, ?, ?, ?)",
                    [as_of, str(run_id), log_versions, published_at])
        hook("before_commit")

    try:
        _in_transaction(con, body)
    except Exception as exc:
        raise PublishError(f"publish {as_of} run {run_id} failed and was rolled back: "
                           f"{type(exc).__name__}: {exc}") from exc
    hook("after_commit")

    # ---- read back: COMMIT after a failed statement returns silently (PITFALLS.md)
    return verify_published(con, as_of, run_id, cands, published_at)


def verify_published(con, as_of, run_id, cands: Mapping[str, CandidateVersion],
                     published_at=None) -> dict:
    problems = []
    current: dict[str, str] = {}
    for name, cand in sorted(cands.items()):
        got = published_version(con, name, as_of)
        if got != cand.version:
            problems.append(f"{name}: published.versions has {got} for {as_of}, "
                            f"expected {cand.version}")
            continue
        cur = published_version(con, name)
        current[name] = cur
        cur_row = con.execute(
            f"SELECT row_count, content_hash FROM {PUBLISHED}.versions "
            f"WHERE version = ? AND name = ?", [cur, name]).fetchone()
        view = q(PUBLISHED, name)
        if row_count(con, view) != cur_row[0] or content_hash(con, view) != cur_row[1]:
            problems.append(f"{name}: view does not show version {cur}")
        pub = q(PUBLISHED, cand.version)
        if row_count(con, pub) != cand.row_count or content_hash(con, pub) != cand.content_hash:
            problems.append(f"{name}: published table {cand.version} differs from candidate")
        n_hist = con.execute(
            f"SELECT count(*) FROM {q(PUBLISHED, name + '_history')} "
            f"WHERE partition_date = ?", [_date(as_of)]).fetchone()[0]
        if n_hist != cand.row_count:
            problems.append(f"{name}: history partition {as_of} has {n_hist} rows, "
                            f"expected {cand.row_count}")
    sql = f"SELECT count(*) FROM {PUBLISHED}.publish_log WHERE as_of_date = ? AND run_id = ?"
    args: list = [_date(as_of), str(run_id)]
    if published_at is not None:
        sql += " AND published_at = ?"
        args.append(published_at)
    if con.execute(sql, args).fetchone()[0] < 1:
        problems.append("publish_log row missing")
    if problems:
        raise PublishError("publish read-back failed (the transaction may have been rolled "
                           "back silently): " + "; ".join(problems))
    return current


def read_published(con, name: str) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM {q(PUBLISHED, name)}").df()
