"""Great Expectations 1.x quality suites, runnable without Dagster.

Why the pandas datasource: GE's SQL datasource on DuckDB returns empty metrics (PITFALLS.md),
so every suite runs on a pandas frame read from DuckDB (or built in memory).

`run_suite` validates one frame against a list of expectation objects and returns a
`SuiteResult` that says, for each failed expectation, which one failed, the observed value and
a few unexpected examples. An error (GE raising, a missing column, no results) never counts as
passed.

Blocking vs. advisory: every expectation is blocking (GE severity "critical") unless it was
built with ``severity="warning"``; a failed warning is reported but does not fail the suite.
Used for the audience minimum size: an audience under the platform minimum is *not exported*
(the activation step records why) rather than stopping every other output.

Suite builders return lists of fresh expectation objects; aggregated checks (segment shares,
size change, audience sizes, per-file reconciliation) run on small frames built by the
``*_frame`` helpers here.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# GE 1.x sends usage statistics unless told not to; the pipeline runs offline.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

MAX_EXAMPLES = 5
SHA256_HEX_REGEX = r"^[0-9a-f]{64}$"
# A raw email anywhere in an export column.
RAW_EMAIL_REGEX = r"@"
# A raw phone: a leading "+" followed by a digit, or a value made only of digits and phone
# punctuation with at least 7 digits -- unless it is a 64-char lower-case hex digest.
RAW_PHONE_REGEX = r"^(?:\s*\+\s*\d|(?![0-9a-f]{64}$)[\s().\-/]*(?:\d[\s().\-/]*){7,}$)"

_CTX_LOCK = threading.Lock()
_CTX: dict[str, Any] = {}


# --------------------------------------------------------------------------- results
@dataclass
class ExpectationOutcome:
    type: str
    column: str | None
    kwargs: dict
    success: bool
    severity: str = "critical"
    observed_value: Any = None
    unexpected_count: int | None = None
    element_count: int | None = None
    unexpected_examples: list = field(default_factory=list)
    unexpected_rows: list = field(default_factory=list)  # index values (e.g. segment name)
    error: str | None = None
    condition: str | None = None  # row condition, e.g. "segment == 'maintain'"

    @property
    def blocking(self) -> bool:
        return self.severity == "critical"

    def describe(self) -> str:
        target = f"[{self.column}]" if self.column else ""
        if self.condition:
            target += f" where {self.condition}"
        if self.error:
            return f"{self.type}{target}: ERROR {self.error}"
        args = {k: v for k, v in self.kwargs.items()
                if k not in ("column", "batch_id", "result_format", "row_condition",
                             "condition_parser") and v is not None}
        parts = [f"{self.type}{target} {args}" if args else f"{self.type}{target}"]
        parts.append(f"observed={short_repr(self.observed_value)}")
        if self.unexpected_examples:
            parts.append(f"examples={short_repr(self.unexpected_examples)}")
        if self.unexpected_rows:
            parts.append(f"rows={short_repr(self.unexpected_rows)}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {
            "type": self.type, "column": self.column, "kwargs": _jsonable(self.kwargs),
            "success": self.success, "severity": self.severity,
            "observed_value": _jsonable(self.observed_value),
            "unexpected_count": self.unexpected_count, "element_count": self.element_count,
            "unexpected_examples": _jsonable(self.unexpected_examples),
            "unexpected_rows": _jsonable(self.unexpected_rows), "error": self.error,
            "condition": self.condition,
        }


@dataclass
class SuiteResult:
    suite_name: str
    success: bool
    n_expectations: int
    n_failed: int  # blocking failures (errors included)
    results: list[ExpectationOutcome] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.blocking]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and not r.blocking]

    def headline(self, limit: int = 1000) -> str:
        """One paragraph for the check's description in the UI: passed, or how many blocking
        expectations failed and each of them (expectation, bounds, observed value, examples),
        every failure given its share of `limit`, so the second failure is not cut off."""
        if self.success:
            return f"{self.suite_name}: passed ({self.n_expectations} expectations)"
        items = [r.describe() for r in self.failed]
        if self.error:
            items.insert(0, f"error: {self.error}")
        head = (f"{self.suite_name}: FAILED, {self.n_failed} of {self.n_expectations} "
                f"expectations: ")
        room = max(120, (limit - len(head)) // max(len(items), 1) - 3)
        items = [i if len(i) <= room else i[:room - 3] + "..." for i in items]
        return (head + " | ".join(items) if items else head + "no detail")[:limit]

    def summary_text(self) -> str:
        head = (f"suite {self.suite_name}: {'PASSED' if self.success else 'FAILED'} "
                f"({self.n_expectations} expectations, {self.n_failed} failed)")
        lines = [head]
        if self.error:
            lines.append(f"  error: {self.error}")
        for r in self.failed:
            lines.append(f"  FAILED {r.describe()}")
        for r in self.warnings:
            lines.append(f"  WARNING {r.describe()}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "suite": self.suite_name, "success": self.success,
            "n_expectations": self.n_expectations, "n_failed": self.n_failed,
            "error": self.error, "notes": list(self.notes),
            "results": [r.to_dict() for r in self.results],
        }


def merge_results(suite_name: str, parts: Sequence[SuiteResult]) -> SuiteResult:
    """One result from several frames' runs (e.g. row-level + aggregated); all must pass."""
    errors = [f"{p.suite_name}: {p.error}" for p in parts if p.error]
    return SuiteResult(
        suite_name=suite_name,
        success=bool(parts) and all(p.success for p in parts),
        n_expectations=sum(p.n_expectations for p in parts),
        n_failed=sum(p.n_failed for p in parts),
        results=[r for p in parts for r in p.results],
        error="; ".join(errors) or (None if parts else "no parts"),
        notes=[n for p in parts for n in p.notes],
    )


def short_repr(v: Any, limit: int = 300) -> str:
    """A value as short, JSON-safe text for messages and UI metadata."""
    s = repr(_jsonable(v))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, TypeError):
            pass
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


# --------------------------------------------------------------------------- GE plumbing
def _batch_definition():
    """One ephemeral GE context per process (context creation is the slow part)."""
    if "bd" not in _CTX:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        ds = ctx.data_sources.add_pandas("decision_segments_frames")
        asset = ds.add_dataframe_asset("frame")
        _CTX["ctx"] = ctx
        _CTX["bd"] = asset.add_batch_definition_whole_dataframe("whole_frame")
    return _CTX["bd"]


def run_suite(frame: pd.DataFrame, suite_name: str, expectations: list,
              notes: Iterable[str] = ()) -> SuiteResult:
    """Validate `frame` against `expectations` (GE expectation objects) in one batch."""
    notes = list(notes)
    n = len(expectations)
    if not expectations:
        return SuiteResult(suite_name, False, 0, 0, error="suite has no expectations",
                           notes=notes)
    try:
        import great_expectations as gx

        with _CTX_LOCK:
            bd = _batch_definition()
            batch = bd.get_batch(batch_parameters={"dataframe": frame})
            # copies: GE attaches ids to expectations added to a suite
            suite = gx.ExpectationSuite(
                name=suite_name, expectations=[e.copy(deep=True) for e in expectations])
            validation = batch.validate(suite, result_format={
                "result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES})
    except Exception as exc:  # noqa: BLE001 -- an error never counts as passed
        return SuiteResult(suite_name, False, n, n, error=f"{type(exc).__name__}: {exc}",
                           notes=notes)

    outcomes = [_outcome(r) for r in (validation.results or [])]
    if not outcomes:
        return SuiteResult(suite_name, False, n, n, error="GE returned no results",
                           notes=notes)
    n_failed = sum(1 for o in outcomes if not o.success and o.blocking)
    missing = n - len(outcomes)
    error = f"{missing} expectation(s) returned no result" if missing else None
    return SuiteResult(
        suite_name=suite_name,
        success=n_failed == 0 and missing == 0,
        n_expectations=n,
        n_failed=n_failed + max(missing, 0),
        results=outcomes,
        error=error,
        notes=notes,
    )


def _outcome(r) -> ExpectationOutcome:
    cfg = r.expectation_config
    kwargs = {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
    sev = getattr(cfg, "severity", "critical")
    sev = getattr(sev, "value", sev) or "critical"
    res = dict(r.result or {})
    exc = dict(r.exception_info or {})
    error = None
    if exc.get("raised_exception"):
        error = exc.get("exception_message") or "raised"
    else:  # metric-level exceptions are keyed by metric id
        for v in exc.values():
            if isinstance(v, dict) and v.get("raised_exception"):
                error = v.get("exception_message") or "raised"
                break
    observed = res.get("observed_value")
    if observed is None and "unexpected_count" in res:
        observed = (f"{res.get('unexpected_count')} unexpected of "
                    f"{res.get('element_count')} "
                    f"({round(float(res.get('unexpected_percent') or 0.0), 3)}%)")
    rows = res.get("partial_unexpected_index_list") or []
    return ExpectationOutcome(
        type=cfg.type,
        column=kwargs.get("column") or (",".join(kwargs["column_list"])
                                        if kwargs.get("column_list") else None),
        kwargs=kwargs,
        success=bool(r.success) and error is None,
        severity=str(sev),
        observed_value=observed,
        unexpected_count=res.get("unexpected_count"),
        element_count=res.get("element_count"),
        unexpected_examples=list(res.get("partial_unexpected_list") or [])[:MAX_EXAMPLES],
        unexpected_rows=list(rows)[:MAX_EXAMPLES],
        error=error,
        condition=_condition_text(kwargs.get("row_condition")),
    )


def _row_column(name: str):
    from great_expectations.expectations.row_conditions import Column

    return Column(name)


def _condition_text(cond: Any) -> str | None:
    if not cond:
        return None
    if isinstance(cond, dict) and {"column", "operator"} <= cond.keys():
        col = cond["column"].get("name") if isinstance(cond["column"], dict) else cond["column"]
        return f"{col} {cond['operator']} {cond.get('parameter')!r}"
    return str(cond)


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


# --------------------------------------------------------------------------- segments
def score_columns(columns: Iterable[str]) -> list[str]:
    return sorted(c for c in columns if str(c).endswith("_score"))


def segments_suite(allowed_segments: Sequence[str], allowed_drivers: Sequence[str],
                   columns: Iterable[str] = (), *, key: str = "customer_id",
                   segment_col: str = "primary_segment",
                   driver_col: str = "persuasion_driver",
                   required_not_null: Sequence[str] = ("as_of_date", "run_id",
                                                       "model_versions")) -> list:
    """Row-level checks on the candidate segments table (one row per customer).

    `columns` are the frame's columns: every ``*_score`` column among them is checked to lie
    in [0, 1] (mostly=1.0). Nulls in the driver column are allowed (GE set/between checks
    ignore nulls); use `required_not_null` to forbid them.
    """
    gxe = _gxe()
    ex = [
        gxe.ExpectColumnValuesToNotBeNull(column=key),
        gxe.ExpectColumnValuesToBeUnique(column=key),
        gxe.ExpectColumnValuesToNotBeNull(column=segment_col),
        gxe.ExpectColumnValuesToBeInSet(column=segment_col, value_set=list(allowed_segments)),
        gxe.ExpectColumnValuesToBeInSet(column=driver_col, value_set=list(allowed_drivers)),
    ]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in required_not_null]
    ex += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0.0, max_value=1.0, mostly=1.0)
           for c in score_columns(columns)]
    return ex


def segment_shares_frame(segments: pd.DataFrame,
                         previous_sizes: Mapping[str, int] | None = None,
                         segment_col: str = "primary_segment",
                         all_segments: Sequence[str] = ()) -> pd.DataFrame:
    """(segment, size, share, prev_size, size_change), indexed by segment, sorted.

    size_change = size / prev_size - 1 (NaN where there is no previous size). Segments that
    existed before and vanished appear with size 0 (size_change -1).
    """
    sizes = segments[segment_col].value_counts(dropna=False)
    names = set(map(str, sizes.index)) | set(all_segments) | set(previous_sizes or {})
    total = int(sizes.sum())
    rows = []
    for name in sorted(names):
        size = int(sizes.get(name, 0))
        prev = (previous_sizes or {}).get(name)
        prev = None if prev is None else int(prev)
        change = (size / prev - 1.0) if prev else float("nan")
        rows.append({"segment": name, "size": size,
                     "share": (size / total) if total else float("nan"),
                     "prev_size": float("nan") if prev is None else float(prev),
                     "size_change": change})
    frame = pd.DataFrame(rows, columns=["segment", "size", "share", "prev_size", "size_change"])
    return frame.set_index(pd.Index(frame["segment"], name="segment_name"))


def segment_shares_suite(min_share: float = 0.0, max_share: float = 0.98,
                         segment_bounds: Mapping[str, tuple[float, float]] | None = None,
                         max_size_change: float | None = 0.5,
                         has_previous: bool = False) -> tuple[list, list[str]]:
    """Table-level checks on `segment_shares_frame`. Returns (expectations, notes).

    - at least one segment and total size > 0;
    - every share within [min_share, max_share]; `segment_bounds` overrides per segment
      (e.g. {"maintain": (0.0, 0.98)}) as row-conditioned expectations;
    - |size_change| <= max_size_change vs the last published version -- skipped, with a
      note, when there is no previous version.
    """
    gxe = _gxe()
    notes: list[str] = []
    ex = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnSumToBeBetween(column="size", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="share", min_value=min_share,
                                          max_value=max_share),
    ]
    for seg, (lo, hi) in sorted((segment_bounds or {}).items()):
        ex.append(gxe.ExpectColumnValuesToBeBetween(
            column="share", min_value=lo, max_value=hi,
            row_condition=_row_column("segment") == seg))
    if max_size_change is None:
        notes.append("size change check disabled")
    elif not has_previous:
        notes.append("size change vs last published version skipped: no previous version")
    else:
        ex.append(gxe.ExpectColumnValuesToBeBetween(
            column="size_change", min_value=-max_size_change, max_value=max_size_change))
    return ex, notes


def check_segments(segments: pd.DataFrame, allowed_segments: Sequence[str],
                   allowed_drivers: Sequence[str],
                   previous_sizes: Mapping[str, int] | None = None, *,
                   min_share: float = 0.0, max_share: float = 0.98,
                   segment_bounds: Mapping[str, tuple[float, float]] | None = None,
                   max_size_change: float | None = 0.5,
                   segment_col: str = "primary_segment",
                   suite_name: str = "segments") -> SuiteResult:
    """Row-level + table-level segment checks as one result."""
    rows = run_suite(segments, f"{suite_name}.rows",
                     segments_suite(allowed_segments, allowed_drivers, segments.columns,
                                    segment_col=segment_col))
    shares = segment_shares_frame(segments, previous_sizes, segment_col)
    ex, notes = segment_shares_suite(min_share, max_share, segment_bounds, max_size_change,
                                     has_previous=bool(previous_sizes))
    table = run_suite(shares, f"{suite_name}.shares", ex, notes)
    return merge_results(suite_name, [rows, table])


# --------------------------------------------------------------------------- scores
def scores_suite(columns: Iterable[str], *, key: str = "customer_id",
                 required_not_null: Sequence[str] = ("as_of_date", "run_id",
                                                     "model_versions")) -> list:
    """Row-level checks on the candidate scores table: one row per customer, every
    ``*_score`` column in [0, 1]; nulls allowed in a score (an absent model scores nobody)."""
    gxe = _gxe()
    columns = list(columns)
    ex = [
        gxe.ExpectColumnValuesToNotBeNull(column=key),
        gxe.ExpectColumnValuesToBeUnique(column=key),
    ]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in required_not_null]
    ex += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0.0, max_value=1.0, mostly=1.0)
           for c in score_columns(columns)]
    return ex


def check_scores(scores: pd.DataFrame, suite_name: str = "scores") -> SuiteResult:
    ex = [_gxe().ExpectTableRowCountToBeBetween(min_value=1), *scores_suite(scores.columns)]
    return run_suite(scores, suite_name, ex)


# --------------------------------------------------------------------------- exclusions
def exclusions_suite(allowed_audiences: Sequence[str], *,
                     required_not_null: Sequence[str] = ("as_of_date", "run_id")) -> list:
    """Row-level checks on the long exclusions table (customer x audience)."""
    gxe = _gxe()
    ex = [
        gxe.ExpectColumnValuesToNotBeNull(column="customer_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="audience"),
        gxe.ExpectColumnValuesToBeInSet(column="audience", value_set=list(allowed_audiences)),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["customer_id", "audience"]),
    ]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in required_not_null]
    return ex


def check_exclusions(exclusions: pd.DataFrame, allowed_audiences: Sequence[str],
                     customers: Iterable[str] | None = None,
                     suite_name: str = "exclusions") -> SuiteResult:
    """Row checks; with `customers` (the segments candidate's ids) also every excluded
    customer must be a known customer of the partition."""
    ex = exclusions_suite(allowed_audiences)
    frame = exclusions
    if customers is not None:
        # a flag column, not a value_set of every id (that would land in every result)
        known = set(map(str, customers))
        frame = exclusions.assign(
            known_customer=exclusions["customer_id"].astype(str).isin(known).to_numpy())
        frame = frame.set_index(pd.Index(frame["customer_id"].astype(str), name="customer"))
        ex.append(_gxe().ExpectColumnValuesToBeInSet(column="known_customer", value_set=[True]))
    return run_suite(frame, suite_name, ex)


# --------------------------------------------------------------------------- audiences
AUDIENCE_META_COLUMNS = ("audience", "customer_id", "marketing_consent", "holdout",
                         "as_of_date", "run_id", "audience_kind", "model_versions")
UNHASHED_EXPORT_COLUMNS = ("country", "zip")
ZIP_LIKE = ("zip",)
# The export columns that are not hashed, and the only shapes they may take (activation's
# normalisers produce exactly these; anything else, a formula in a zip, fails the gate).
UNHASHED_EXPORT_REGEX = {"country": r"^[A-Z]{2}$",
                         "zip": r"^[A-Za-z0-9](?:[A-Za-z0-9 \-]{0,8}[A-Za-z0-9])?$"}
# A cell a spreadsheet would run as a formula (OWASP "CSV injection").
FORMULA_REGEX = r"^[=+\-@\t\r]"


def audience_export_columns(columns: Iterable[str]) -> tuple[list[str], list[str]]:
    """(hashed columns, other export columns) of a prepared audience frame."""
    cols = [c for c in columns if c not in AUDIENCE_META_COLUMNS]
    hashed = sorted(c for c in cols if c.endswith("_sha256"))
    other = sorted(c for c in cols if c not in hashed)
    return hashed, other


def audience_suite(columns: Iterable[str], min_size: int = 100) -> tuple[list, list]:
    """Checks on the candidate audience membership frame (as prepared by activation).

    Returns (row-level expectations, expectations on `audience_sizes_frame`).
    Row level: marketing_consent all True; (audience, customer_id) unique; hashed columns
    match ^[0-9a-f]{64}$ where not null; unhashed columns (country, zip) match their shape
    (UNHASHED_EXPORT_REGEX); no cell begins like a formula; no raw email ('@') in any export column; no raw
    phone in any export column (zip excepted: a ZIP+4 looks like digits).
    Aggregated: each audience has >= min_size members -- severity "warning": an audience
    under the platform minimum is not exported (recorded in the manifest) but does not
    block the other outputs.
    """
    gxe = _gxe()
    columns = list(columns)
    hashed, other = audience_export_columns(columns)
    rows = [
        gxe.ExpectColumnValuesToNotBeNull(column="customer_id"),
        gxe.ExpectColumnValuesToBeInSet(column="marketing_consent", value_set=[True]),
        gxe.ExpectColumnValuesToNotBeNull(column="marketing_consent"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["audience", "customer_id"]),
    ]
    rows += [gxe.ExpectColumnValuesToMatchRegex(column=c, regex=SHA256_HEX_REGEX)
             for c in hashed]
    for c in other:  # the unhashed values, validated by activation: nothing else
        regex = UNHASHED_EXPORT_REGEX.get(c, r"^$")
        rows.append(gxe.ExpectColumnValuesToMatchRegex(column=c, regex=regex))
    for c in hashed + other:
        rows.append(gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=FORMULA_REGEX))
        rows.append(gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=RAW_EMAIL_REGEX))
        if c not in ZIP_LIKE:
            rows.append(gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=RAW_PHONE_REGEX))
    sizes = [gxe.ExpectColumnValuesToBeBetween(column="size", min_value=min_size,
                                               severity="warning")]
    return rows, sizes


def audience_sizes_frame(prepared: pd.DataFrame) -> pd.DataFrame:
    """(audience, size) of members eligible for export (holdout excluded), sorted."""
    frame = prepared
    if "holdout" in frame.columns:
        frame = frame[~frame["holdout"].fillna(False).astype(bool)]
    sizes = frame.groupby("audience", sort=True)["customer_id"].nunique()
    out = pd.DataFrame({"audience": sizes.index.astype(str), "size": sizes.values.astype(int)})
    return out.set_index(pd.Index(out["audience"], name="audience_name"))


def check_audiences(prepared: pd.DataFrame, min_size: int = 100,
                    suite_name: str = "audiences") -> SuiteResult:
    rows_ex, size_ex = audience_suite(prepared.columns, min_size)
    rows = run_suite(prepared, f"{suite_name}.rows", rows_ex)
    sizes_frame = audience_sizes_frame(prepared)
    notes = []
    if sizes_frame.empty:
        notes.append("no audience has exportable members")
        size_ex = [_gxe().ExpectTableRowCountToBeBetween(min_value=0)]
    sizes = run_suite(sizes_frame, f"{suite_name}.sizes", size_ex, notes)
    return merge_results(suite_name, [rows, sizes])


# --------------------------------------------------------------------------- raw / staging
# Columns a credit note makes negative (data/README.md: a cancellation exported as an invoice).
CREDIT_NOTE_COLUMNS = {("crm__orders", "gross_amount"), ("crm__order_lines", "quantity")}


def raw_suite(source_table, partition_end=None, *, check_unique: bool = True,
              columns: Iterable[str] | None = None) -> list:
    """Checks on a raw (staged, deduplicated) table frame, from the input contract.

    `source_table` is a `contract.SourceTable`. Non-nullable columns not null; the dedupe
    key unique (after the staging dedupe); amounts >= 0 and quantities > 0 as the contract
    says, except what a credit note carries (an order's negative gross amount, an order line's
    negative quantity: stg_crm__credit_note_returns reads them; an order line's quantity is
    never 0); the event-time column not after `partition_end` (exclusive end, i.e.
    the day after the landing day -- half-open window). Columns absent from `columns`
    (when given) are skipped: a missing *required* column is the ingest's error.
    """
    gxe = _gxe()
    present = set(columns) if columns is not None else set(source_table.column_names)
    ex: list = []
    for c in source_table.columns:
        if c.name in present and not c.nullable:
            ex.append(gxe.ExpectColumnValuesToNotBeNull(column=c.name))
    key = [k for k in source_table.dedupe_key if k in present]
    if check_unique and key:
        if len(key) == 1:
            ex.append(gxe.ExpectColumnValuesToBeUnique(column=key[0]))
        else:
            ex.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(key)))
    for c in source_table.columns:
        if c.name not in present:
            continue
        if (source_table.raw_name, c.name) in CREDIT_NOTE_COLUMNS:
            if c.name == "quantity":
                ex.append(gxe.ExpectColumnValuesToNotBeInSet(column=c.name, value_set=[0]))
        elif c.name == "quantity":
            ex.append(gxe.ExpectColumnValuesToBeBetween(column=c.name, min_value=1))
        elif c.type in ("DOUBLE", "INTEGER", "BIGINT") and _is_amount(c.name):
            ex.append(gxe.ExpectColumnValuesToBeBetween(column=c.name, min_value=0))
    if partition_end is not None and source_table.event_time in present:
        end = pd.Timestamp(partition_end)
        if end.tzinfo is None and source_table.column_names and _is_tz(source_table):
            end = end.tz_localize("UTC")
        ex.append(gxe.ExpectColumnValuesToBeBetween(
            column=source_table.event_time, max_value=end, strict_max=True))
    return ex


def _is_amount(name: str) -> bool:
    return any(t in name for t in ("amount", "price", "cost", "fee", "spend", "minutes",
                                   "impressions", "clicks", "rate"))


def _is_tz(source_table) -> bool:
    col = next(c for c in source_table.columns if c.name == source_table.event_time)
    return col.type == "TIMESTAMPTZ"


def count_data_lines(path) -> int:
    """Records in a landed CSV as ingest counts them: non-blank physical lines after the
    header (ingest assumes one record per line)."""
    with open(path, "rb") as fh:
        n = sum(1 for line in fh if line.strip())
    return max(n - 1, 0)


def reconciliation_suite() -> list:
    """Per-file reconciliation on a frame (file, lines_read, loaded, quarantined, diff):
    loaded + quarantined == lines read, i.e. diff == 0 for every file. A null lines_read
    (the landed file could not be read back) fails: between-checks ignore nulls."""
    gxe = _gxe()
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="file"),
        gxe.ExpectColumnValuesToNotBeNull(column="lines_read"),
        gxe.ExpectColumnValuesToBeBetween(column="diff", min_value=0, max_value=0),
    ]


def reconciliation_frame(counts: pd.DataFrame) -> pd.DataFrame:
    """Adds ``diff = lines_read - loaded - quarantined``; indexed by file for examples."""
    out = counts[["file", "lines_read", "loaded", "quarantined"]].copy()
    out["diff"] = out["lines_read"] - out["loaded"] - out["quarantined"]
    out = out.sort_values("file", kind="stable")
    return out.set_index(pd.Index(out["file"], name="file_name"))
