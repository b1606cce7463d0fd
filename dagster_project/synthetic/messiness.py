"""Bad input (DESIGN §4): render one landing file and inject defects, recording each one.

A file is rendered from "raw" rows: a dict of numpy arrays keyed by the contract's column
names (TIMESTAMPTZ as epoch seconds, DATE as epoch days, DOUBLE as float, INTEGER/BIGINT
as int, VARCHAR/BOOLEAN as text) plus bookkeeping columns starting with ``_``:
``_eday`` (event day), ``_seq`` (generation order), ``_orphan`` (row of an orphan order)
and, for returns, ``_line_value`` (value of the returned line).

Each defect is logged with the file (relative to ``<out>``), the 1-based physical line
(header = line 1), the column and the row's key, so tests and the ingest can find it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..lib.contract import SourceTable
from . import formatting as fmt
from .formatting import SECONDS_PER_DAY, S

KINDS = (
    "malformed_row", "unparseable_timestamp", "duplicate_row", "late_arriving",
    "mixed_tz_offset", "email_case_whitespace", "orphan_order", "refund_exceeds_order",
    "negative_quantity", "future_timestamp", "missing_column",
)
# rate-driven row-level kinds, in the order rows are handed out (disjoint sets per file)
ROW_KINDS = ("malformed_row", "unparseable_timestamp", "mixed_tz_offset", "email_case_whitespace",
             "refund_exceeds_order", "negative_quantity", "future_timestamp", "duplicate_row")
MIN_ROWS_FOR_FORCED_DEFECT = 200
SHARE_PLUS_ZERO_OFFSET = 0.1  # "+00:00" instead of "Z": same instant, not a defect

KEY_COLUMNS = {
    "crm__customers": ("customer_id",),
    "crm__orders": ("order_id",),
    "crm__order_lines": ("order_id", "line_number"),
    "crm__support_tickets": ("ticket_id",),
    "web__events": ("event_id",),
    "ads__creatives": ("creative_id",),
    "ads__spend": ("spend_date", "channel", "campaign_id", "creative_id"),
    "ads__exposures": ("exposure_date", "customer_id", "channel", "creative_id"),
    "returns__returns": ("return_id",),
    "fx__rates": ("rate_date", "currency"),
    "marketing__activation_log": ("activation_date", "customer_id", "audience"),
}
# written as CSV fields: the ones holding a comma are quoted here (the writer quotes nothing)
GARBAGE_TIMESTAMPS = np.array(["not-a-date", "2025-13-45T25:61:00Z", "31/02/2025 10:00",
                               '"Tue, 31 Feb 2025 10:00"', "0000-00-00T00:00:00Z", "yesterday"],
                              dtype=S)
GARBAGE_NUMBERS = np.array(["N/A", '"12,50"', "twelve", "1.2.3", "€45.00", "--"], dtype=S)


def applicable_kinds(t: SourceTable) -> tuple[str, ...]:
    ts_cols = [c.name for c in t.columns if c.type == "TIMESTAMPTZ"]
    kinds = ["malformed_row", "duplicate_row"]
    if ts_cols:
        kinds += ["unparseable_timestamp", "mixed_tz_offset"]
    if t.raw_name == "crm__customers":
        kinds.append("email_case_whitespace")
    if t.raw_name == "crm__orders":
        kinds.append("orphan_order")
    if t.raw_name == "returns__returns":
        kinds.append("refund_exceeds_order")
    if t.raw_name in ("crm__order_lines", "returns__returns"):
        kinds.append("negative_quantity")
    if t.event_time in ts_cols and t.raw_name != "crm__customers":
        kinds.append("future_timestamp")
    return tuple(kinds)


@dataclass
class DefectLog:
    """Defect records, streamed to a parquet file in row groups to bound memory."""

    path: object = None
    parts: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    pending_rows: int = 0
    writer: object = None

    def flush(self, final: bool = False) -> None:
        if self.parts and (final or self.pending_rows >= 500_000):
            table = self.to_table()
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.writer.write_table(table)
            self.parts, self.pending_rows = [], 0
        if final:
            if self.writer is None:
                pq.write_table(self.to_table(), self.path)
            else:
                self.writer.close()

    def add(self, kind, t: SourceTable, file: str, lines, column, keys, detail) -> None:
        lines = np.asarray(lines, dtype=np.int64)
        n = len(lines)
        if n == 0:
            return
        self.parts.append({
            "kind": np.full(n, kind, dtype=S), "source": np.full(n, t.source, dtype=S),
            "table": np.full(n, t.table, dtype=S), "file": np.full(n, file, dtype=S),
            "line": lines,
            "column": np.full(n, "" if column is None else column, dtype=S),
            "key": np.asarray(keys).astype(S),
            "detail": np.broadcast_to(np.asarray(detail, dtype=S), (n,)).astype(S),
        })
        self.counts[kind] = self.counts.get(kind, 0) + n
        self.pending_rows += n

    def to_table(self) -> pa.Table:
        names = ["kind", "source", "table", "file", "line", "column", "key", "detail"]
        if not self.parts:
            return pa.table({n: pa.array([], pa.int64() if n == "line" else pa.string()) for n in names})
        cols = {n: np.concatenate([p[n] for p in self.parts]) for n in names}
        out = {}
        for n in names:
            if n == "line":
                line = cols[n]
                out[n] = pa.array(line, mask=line <= 0)
            elif n == "column":
                out[n] = pa.array(cols[n].astype(object), pa.string(), mask=cols[n] == "")
            else:
                out[n] = pa.array(cols[n].astype(object), pa.string())
        return pa.table(out)


class Messiness:
    """Per-run defect state: rate, RNG, counters that guarantee at least one of each kind."""

    def __init__(self, rate: float, rng: np.random.Generator, end_day: int, log: DefectLog):
        self.rate = rate
        self.rng = rng
        self.end_day = end_day
        self.log = log
        self.injected: dict[tuple[str, str], int] = {}
        self.rows_seen: dict[str, int] = {}
        # duplicates re-sent in a later file: (table, land_day) -> list of (lines, keys)
        self.carry: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = {}

    def count(self, t: SourceTable, kind: str, n: int) -> int:
        """How many rows of a file of n rows get this defect."""
        if self.rate <= 0 or n == 0:
            return 0
        k = int(self.rng.binomial(n, min(self.rate, 0.2)))
        key = (t.raw_name, kind)
        if k == 0 and self.injected.get(key, 0) == 0 and self.rows_seen.get(t.raw_name, 0) + n >= MIN_ROWS_FOR_FORCED_DEFECT:
            k = 1
        self.injected[key] = self.injected.get(key, 0) + k
        return k


def _concat(chunks: list[dict]) -> dict:
    for c in chunks:
        if "_orphan" not in c:
            c["_orphan"] = np.zeros(len(c["_seq"]), np.int8)
    keys = chunks[0].keys()
    return {k: np.concatenate([c[k] for c in chunks]) for k in keys}


def _take(raw: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in raw.items()}


def render_file(t: SourceTable, chunks: list[dict], land_day: int, rel_path: str,
                mess: Messiness, drop_column: str | None = None,
                make_orphans=None) -> tuple[np.ndarray, dict | None]:
    """Return (CSV text lines incl. header, orphan order-lines raw chunk or None)."""
    rng = mess.rng
    kinds = applicable_kinds(t)
    if drop_column is not None:  # no row-level defect on a column this file does not have
        needs = {"future_timestamp": t.event_time, "negative_quantity": "quantity",
                 "refund_exceeds_order": "refund_amount", "email_case_whitespace": "email"}
        kinds = tuple(k for k in kinds if needs.get(k) != drop_column)
    raw = _concat(chunks) if chunks else None
    orphan_lines = None
    if raw is not None and "orphan_order" in kinds and make_orphans is not None:
        k = mess.count(t, "orphan_order", len(raw["_seq"]))
        if k:
            orphans, orphan_lines = make_orphans(k, land_day)
            raw = _concat([raw, orphans])
    n = 0 if raw is None else len(raw["_seq"])
    columns = [c for c in t.column_names if c != drop_column]
    header = np.array([",".join(columns)], dtype=S)
    carried = mess.carry.pop((t.raw_name, land_day), [])
    if n == 0 and not carried:
        return header, orphan_lines

    ts_cols = [c.name for c in t.columns if c.type == "TIMESTAMPTZ" and c.name != drop_column]
    num_cols = [c.name for c in t.columns if c.type in ("DOUBLE", "INTEGER", "BIGINT")
                and c.name not in KEY_COLUMNS[t.raw_name] and c.name != drop_column]
    keycols = KEY_COLUMNS[t.raw_name]
    types = {c.name: c.type for c in t.columns}
    pieces: list[np.ndarray] = []
    if n:
        # rows stay in generation order (deterministic); chunks arrive in _seq order
        if len(raw["_seq"]) > 1 and not (np.diff(raw["_seq"]) > 0).all():
            raw = _take(raw, np.argsort(raw["_seq"], kind="stable"))
        sel = {}
        candidates = rng.permutation(np.flatnonzero(raw["_orphan"] == 0))
        pos = 0
        for kind in ROW_KINDS:
            if kind not in kinds:
                continue
            k = mess.count(t, kind, n)
            sel[kind] = np.sort(candidates[pos:pos + k])
            pos += k
        mess.rows_seen[t.raw_name] = mess.rows_seen.get(t.raw_name, 0) + n

        # raw-level defects
        tz = {c: np.where(rng.random(n) < SHARE_PLUS_ZERO_OFFSET, 1, 0) for c in ts_cols}
        if "mixed_tz_offset" in sel and ts_cols:
            rows = sel["mixed_tz_offset"]
            codes = rng.integers(fmt.N_UTC_CODES, len(fmt.TZ_OFFSETS), len(rows))
            for c in ts_cols:
                tz[c][rows] = codes
        if "future_timestamp" in sel:
            rows = sel["future_timestamp"]
            raw[t.event_time] = raw[t.event_time].copy()
            raw[t.event_time][rows] = ((land_day + 2) * SECONDS_PER_DAY
                                       + rng.integers(0, 2 * SECONDS_PER_DAY, len(rows)))
        if "negative_quantity" in sel:
            rows = sel["negative_quantity"]
            raw["quantity"] = raw["quantity"].copy()
            raw["quantity"][rows] = -rng.integers(0, 3, len(rows))
        if "refund_exceeds_order" in sel:
            rows = sel["refund_exceeds_order"]
            raw["refund_amount"] = raw["refund_amount"].copy()
            raw["refund_amount"][rows] = np.round(raw["_line_value"][rows] * rng.uniform(1.5, 3.0, len(rows)) + 1, 2)

        text = {}
        for c in t.column_names:
            ty, v = types[c], raw[c]
            if ty == "TIMESTAMPTZ":
                text[c] = fmt.timestamps(v, tz.get(c))
            elif ty == "DATE":
                text[c] = fmt.dates(v)
            elif ty == "DOUBLE":
                text[c] = fmt.fixed(v, 6 if c == "rate_to_reporting" else 2)
            elif ty in ("INTEGER", "BIGINT"):
                text[c] = fmt.integers(v)
            else:
                text[c] = np.asarray(v).astype(S)
        keys = text[keycols[0]]
        for c in keycols[1:]:
            keys = np.strings.add(np.strings.add(keys, "|"), text[c])

        # text-level defects
        extra_field = np.zeros(0, np.int64)
        if "malformed_row" in sel:
            rows = sel["malformed_row"]
            if num_cols:
                as_text = rng.random(len(rows)) < 0.5
                extra_field = rows[~as_text]
                bad = rows[as_text]
                which = rng.integers(0, len(num_cols), len(bad))
                for j, c in enumerate(num_cols):
                    r = bad[which == j]
                    text[c][r] = GARBAGE_NUMBERS[rng.integers(0, len(GARBAGE_NUMBERS), len(r))]
                    mess.log.add("malformed_row", t, rel_path, r + 2, c, keys[r],
                                 "non-numeric value in a numeric column")
            else:
                extra_field = rows
            mess.log.add("malformed_row", t, rel_path, extra_field + 2, None, keys[extra_field],
                         "row has one field more than the header")
        if "unparseable_timestamp" in sel and ts_cols:
            rows = sel["unparseable_timestamp"]
            which = rng.integers(0, len(ts_cols), len(rows))
            for j, c in enumerate(ts_cols):
                r = rows[which == j]
                text[c][r] = GARBAGE_TIMESTAMPS[rng.integers(0, len(GARBAGE_TIMESTAMPS), len(r))]
                mess.log.add("unparseable_timestamp", t, rel_path, r + 2, c, keys[r],
                             "garbage in a timestamp column")
        if "email_case_whitespace" in sel:
            rows = sel["email_case_whitespace"]
            e = text["email"][rows]
            style = rng.integers(0, 3, len(rows))
            e = np.where(style == 0, np.strings.upper(e),
                         np.where(style == 1, np.strings.add(np.strings.add("  ", e), " "),
                                  np.strings.add(np.strings.capitalize(e), " ")))
            text["email"][rows] = e
            mess.log.add("email_case_whitespace", t, rel_path, rows + 2, "email", keys[rows],
                         "email with upper case or surrounding spaces")
        for kind, col, detail in (
            ("mixed_tz_offset", ts_cols[0] if ts_cols else None, "timestamps written with a non-UTC offset (same instant)"),
            ("future_timestamp", t.event_time, "event time after the end of the landing day"),
            ("negative_quantity", "quantity", "quantity <= 0"),
            ("refund_exceeds_order", "refund_amount", "refund larger than the returned line's value"),
        ):
            if kind in sel:
                rows = sel[kind]
                mess.log.add(kind, t, rel_path, rows + 2, col, keys[rows], detail)
        orphan_rows = np.flatnonzero(raw["_orphan"] == 1)
        mess.log.add("orphan_order", t, rel_path, orphan_rows + 2, "customer_id" if t.raw_name == "crm__orders" else "order_id",
                     keys[orphan_rows], "order's customer_id is in no customers file")
        late = np.flatnonzero(raw["_eday"] < land_day)
        if len(late) and (t.event_time is not None or t.raw_name == "crm__order_lines"):
            delay = (land_day - raw["_eday"][late]).astype(S)
            mess.log.add("late_arriving", t, rel_path, late + 2, t.event_time, keys[late],
                         np.strings.add(np.strings.add("landed ", delay), " day(s) after its event day"))

        lines = fmt.join_lines([text[c] for c in columns])
        if len(extra_field):
            lines[extra_field] = np.strings.add(lines[extra_field], ",unexpected")
        pieces.append(lines)

        if "duplicate_row" in sel:
            rows = sel["duplicate_row"]
            later = rng.integers(0, 4, len(rows))  # 0 = same file, else 1-3 days later
            # never carried into the last day: that file may be the one missing a column
            later = np.where(land_day + later >= mess.end_day, 0, later)
            same = rows[later == 0]
            pieces.append(lines[same])
            mess.log.add("duplicate_row", t, rel_path, n + 2 + np.arange(len(same)), None, keys[same],
                         "exact re-send of a row in the same file")
            for dl in np.unique(later[later > 0]):
                r = rows[later == dl]
                mess.carry.setdefault((t.raw_name, land_day + int(dl)), []).append((lines[r], keys[r]))
    for dup_lines, dup_keys in carried:
        start = 2 + sum(len(p) for p in pieces)
        pieces.append(dup_lines)
        mess.log.add("duplicate_row", t, rel_path, start + np.arange(len(dup_lines)), None, dup_keys,
                     "exact re-send of a row from an earlier file")
    return np.concatenate([header] + pieces), orphan_lines
