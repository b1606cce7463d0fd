"""Write-audit-publish, step 2: the Great Expectations gate as blocking asset checks.

Each check reads the candidate of THIS run from the audit schema (what is stored is what gets
checked and published), runs a suite from lib/quality, records the result for that exact
version with `publish.record_gate` and returns a failed `AssetCheckResult` (severity ERROR)
when any blocking expectation failed. A check that raises is recorded and reported as failed:
a check that emits nothing would let the publish step run (PITFALLS.md), and the publish
step checks the recorded results itself anyway.
"""

import datetime as dt
import traceback
from collections.abc import Callable

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from dagster_project.defs.partitions import DUCKDB_POOL, daily_partitions
from dagster_project.defs.quality.candidates import (
    AUDIENCES_NAME,
    EXCLUSIONS_NAME,
    RAW_SUITE,
    SCORES_NAME,
    SEGMENTS_NAME,
    warehouse,
)
from dagster_project.defs.resources import DataPaths
from dagster_project.lib import activation as act
from dagster_project.lib import contract
from dagster_project.lib import exclusions as exc
from dagster_project.lib import publish as pub
from dagster_project.lib import quality as q
from dagster_project.lib import segments as seg
from dagster_project.lib.drivers import UNKNOWN

# Segment-table bounds: the lib defaults (no segment above 98 % of customers; sizes within
# +-50 % of the last published version). A partition where everyone falls to the default
# segment changes no decision and is stopped here.
MAX_SEGMENT_SHARE = 0.98
MAX_SIZE_CHANGE = 0.5
# Raw rows checked per table and day: a seeded reservoir sample keeps the check cheap on
# large drops (the daily files are small; the cap only matters for big event tables).
RAW_SAMPLE_ROWS = 50_000


# --------------------------------------------------------------------------- reporting
def _md_cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")[:200]


def result_metadata(result: q.SuiteResult, version: str | None) -> dict:
    """What the UI shows: failed expectations with observed values and examples."""
    failed = result.failed
    rows = ["| expectation | column | where | observed | unexpected | examples |",
            "| --- | --- | --- | --- | --- | --- |"]
    for r in failed:
        examples = r.unexpected_examples or r.unexpected_rows
        rows.append("| " + " | ".join(_md_cell(x) for x in (
            r.type, r.column or "", r.condition or "", q.short_repr(r.observed_value, 120),
            "" if r.unexpected_count is None else r.unexpected_count,
            q.short_repr(examples, 160) if examples else r.error or "")) + " |")
    meta = {
        "suite": result.suite_name,
        "version": version or "",
        "n_expectations": result.n_expectations,
        "n_failed": result.n_failed,
        "failed_expectations": dg.MetadataValue.md(
            "\n".join(rows) if failed
            else f"ERROR: {result.error}" if result.error else "none failed"),
        "failed_details": dg.MetadataValue.json([r.to_dict() for r in failed]),
        "warnings": dg.MetadataValue.json([r.describe() for r in result.warnings]),
        "notes": dg.MetadataValue.json(list(result.notes)),
    }
    if result.error:
        meta["error"] = dg.MetadataValue.text(result.error)
    return meta


def _error_result(suite: str, exc_: BaseException) -> q.SuiteResult:
    text = "".join(traceback.format_exception_only(type(exc_), exc_)).strip()
    return q.SuiteResult(suite, False, 0, 1, error=f"check raised: {text}")


def run_gate(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource, suite: str,
             name: str | None,
             evaluate: Callable[..., q.SuiteResult]) -> dg.AssetCheckResult:
    """Run `evaluate(con, as_of, versions)` on this run's candidates, record the result
    against candidate `name` (all candidates when None) and turn it into a check result.
    Never passes on an error."""
    as_of = dt.date.fromisoformat(context.partition_key)
    version = None
    try:
        with warehouse(duckdb) as con:
            versions = pub.run_candidates(con, as_of, context.run.run_id)
            targets = list(versions.values()) if name is None else [versions.get(name)]
            if not versions or None in targets:
                result = q.SuiteResult(suite, False, 0, 1, error=(
                    f"no {name or 'audit'} candidate written by run {context.run.run_id} for "
                    f"{as_of}: materialize audit_candidates in the same run"))
            else:
                version = ",".join(targets)
                try:
                    result = evaluate(con, as_of, versions)
                except Exception as exc_:  # noqa: BLE001 -- recorded and reported as failed
                    result = _error_result(suite, exc_)
                for v in targets:
                    pub.record_gate(con, v, suite, result)
    except Exception as exc_:  # noqa: BLE001 -- e.g. the warehouse cannot be opened
        result = _error_result(suite, exc_)
    for line in result.summary_text().splitlines():
        (context.log.info if result.success else context.log.error)(line)
    return dg.AssetCheckResult(
        passed=bool(result.success),
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.headline(1000),
        # the check itself is not partitioned: the UI shows "Partition —" without this
        metadata={"partition": context.partition_key, **result_metadata(result, version)},
    )


# --------------------------------------------------------------------------- suites
def allowed_segments() -> list[str]:
    config = seg.load_config()
    return sorted({*seg.SEGMENTS, config.get("default_segment", seg.DEFAULT_SEGMENT)})


def evaluate_segments(con, as_of, versions) -> q.SuiteResult:
    frame = pub.read_candidate(con, versions[SEGMENTS_NAME])
    previous = pub.previous_sizes(con, SEGMENTS_NAME, "primary_segment",
                                  before=as_of)
    # A segment merged tonight by the minimum-size rule, or impossible without its data, is a
    # stated decision of the segments layer (segmentation.segment_status), not a collapse:
    # its size change is not judged (a small shop's segment near the minimum would otherwise
    # stop every night it falls below it). Every other segment's is.
    exempt = ruled_out_segments(con, as_of)
    result = q.check_segments(
        frame, allowed_segments(), [*contract.PERSUASION_THEMES, UNKNOWN],
        previous_sizes={s: n for s, n in (previous or {}).items() if s not in exempt},
        max_share=MAX_SEGMENT_SHARE, max_size_change=MAX_SIZE_CHANGE, suite_name="segments")
    for s, why in sorted(exempt.items()):
        if previous and s in previous:
            result.notes.append(f"size change of {s} not judged: {why}")
    return result


def ruled_out_segments(con, as_of) -> dict[str, str]:
    """{segment: status and reason} of the segments merged or impossible at ``as_of``."""
    from duckdb import CatalogException

    try:
        rows = con.execute("select segment, status, reason from segmentation.segment_status "
                           "where as_of_date = ? and status <> 'stands'", [as_of]).fetchall()
    except CatalogException:
        return {}
    return {s: f"{status} tonight ({reason})" for s, status, reason in rows}


def evaluate_scores(con, as_of, versions) -> q.SuiteResult:
    return q.check_scores(pub.read_candidate(con, versions[SCORES_NAME]), suite_name="scores")


def evaluate_exclusions(con, as_of, versions) -> q.SuiteResult:
    frame = pub.read_candidate(con, versions[EXCLUSIONS_NAME])
    customers = con.execute(
        f"select customer_id from {pub.q(pub.AUDIT, versions[SEGMENTS_NAME])}").df()
    return q.check_exclusions(frame, exc.AUDIENCES, customers=customers["customer_id"],
                              suite_name="exclusions")


def evaluate_audiences(con, as_of, versions) -> q.SuiteResult:
    frame = pub.read_candidate(con, versions[AUDIENCES_NAME])
    return q.check_audiences(frame, min_size=act.PLATFORM_MIN_SIZE, suite_name="audiences")


def raw_frames(con, as_of: dt.date):
    """(table, latest landing date, sampled rows) for each raw table with files by `as_of`.

    The partition's landed files: each table's files of the latest landing day <= as_of
    (the day itself on a normal night), so the check stays small whatever the history."""
    for t in contract.TABLES:
        latest = con.execute(
            "select max(file_date) from raw.ingested_files where raw_table = ? "
            "and file_date <= ?", [t.raw_name, as_of]).fetchone()[0]
        if latest is None:
            yield t, None, pd.DataFrame(columns=t.column_names)
            continue
        # TIMESTAMPTZ travels as UTC wall time and is re-localised in pandas: DuckDB 1.5.6's
        # pandas conversion of TIMESTAMPTZ triggers a pandas 3.1 deprecation warning.
        tz_cols = [c.name for c in t.columns if c.type == "TIMESTAMPTZ"]
        cols = ", ".join(f"timezone('UTC', \"{c}\") as \"{c}\"" if c in tz_cols else f'"{c}"'
                         for c in t.column_names)
        frame = con.execute(
            f"select * from (select {cols}, _file, _line from raw.{t.raw_name} "
            f"where _file_date = ?) using sample reservoir({RAW_SAMPLE_ROWS} rows) "
            f"repeatable (7)", [latest]).df()
        for c in tz_cols:
            frame[c] = pd.to_datetime(frame[c]).dt.tz_localize("UTC")
        yield t, latest, frame


def reconciliation_counts(con, raw_root, as_of: dt.date) -> pd.DataFrame:
    """Per landed file of the latest day: lines in the file vs rows loaded + quarantined."""
    files = con.execute(
        """
        with latest as (
            select raw_table, max(file_date) as d from raw.ingested_files
            where file_date <= ? group by raw_table
        )
        select f.raw_table, f.file from raw.ingested_files f
        join latest l on l.raw_table = f.raw_table and l.d = f.file_date
        order by f.raw_table, f.file
        """, [as_of]).fetchall()
    rows = []
    for raw_table, rel in files:
        contract.table(raw_table)  # only contract tables are queried below
        loaded = con.execute(f"select count(*) from raw.{raw_table} where _file = ?",
                             [rel]).fetchone()[0]
        quarantined = con.execute(
            "select count(distinct line) from raw.quarantine where raw_table = ? and file = ? "
            "and action = 'quarantined'", [raw_table, rel]).fetchone()[0]
        path = raw_root / rel
        lines = q.count_data_lines(path) if path.is_file() else None
        rows.append({"file": f"{raw_table}:{rel}", "lines_read": lines,
                     "loaded": int(loaded), "quarantined": int(quarantined)})
    frame = pd.DataFrame(rows, columns=["file", "lines_read", "loaded", "quarantined"])
    return frame.astype({"lines_read": "float64"})


def evaluate_raw(raw_root) -> Callable[..., q.SuiteResult]:
    def evaluate(con, as_of, versions) -> q.SuiteResult:
        end = as_of + dt.timedelta(days=1)  # half-open: event time < the day after
        parts = []
        for t, latest, frame in raw_frames(con, as_of):
            if latest is None:
                continue
            # Raw keeps re-sent rows (staging dedupes them, and dbt's unique tests on the
            # staging keys arrive as checks of their own), so no key uniqueness here.
            ex = q.raw_suite(t, end, check_unique=False, columns=frame.columns)
            parts.append(q.run_suite(frame, f"raw.{t.raw_name}", ex,
                                     notes=[f"{t.raw_name}: {len(frame)} rows of {latest}"]))
        recon = q.reconciliation_frame(reconciliation_counts(con, raw_root, as_of))
        parts.append(q.run_suite(recon, "raw.reconciliation", q.reconciliation_suite(),
                                 notes=[f"{len(recon)} files reconciled"]))
        return q.merge_results(RAW_SUITE, parts)
    return evaluate


# --------------------------------------------------------------------------- checks
_CHECK = {"asset": "audit_candidates", "blocking": True, "pool": DUCKDB_POOL,
          "partitions_def": daily_partitions}


@dg.asset_check(name="segments_gate", description=(
    "GE: one row per customer, ids unique, scores in [0,1], segments and drivers in the "
    "allowed sets, shares and size change vs the last published version within bounds."),
    **_CHECK)
def segments_gate(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
    return run_gate(context, duckdb, "segments", SEGMENTS_NAME, evaluate_segments)


@dg.asset_check(name="scores_gate", description=(
    "GE: one scores row per customer, every score in [0,1], run and model versions set."),
    **_CHECK)
def scores_gate(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
    return run_gate(context, duckdb, "scores", SCORES_NAME, evaluate_scores)


@dg.asset_check(name="exclusions_gate", description=(
    "GE: exclusion rows unique per customer and audience, audiences known, customers known."),
    **_CHECK)
def exclusions_gate(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
    return run_gate(context, duckdb, "exclusions", EXCLUSIONS_NAME, evaluate_exclusions)


@dg.asset_check(name="audiences_gate", description=(
    "GE: every audience member consented, identifiers SHA-256 hex, no raw email or phone, "
    "one row per audience and customer; audiences under the platform minimum are warned."),
    **_CHECK)
def audiences_gate(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
    return run_gate(context, duckdb, "audiences", AUDIENCES_NAME, evaluate_audiences)


@dg.asset_check(name="raw_quality", description=(
    "GE on the partition's landed raw rows (contract nullability, amounts, event time before "
    "the partition end, keys unique) and per-file reconciliation lines = loaded + quarantined."),
    **_CHECK)
def raw_quality(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource,
                paths: DataPaths):
    return run_gate(context, duckdb, RAW_SUITE, None, evaluate_raw(paths.raw))

