"""Alarms for the people who run the pipeline: run-failure records and source freshness.

Pure functions (no Dagster import); the run-failure sensor and the freshness checks in
`defs/` call them.

Failure alerts go to an append-only JSON-lines file (``<data>/alerts/alerts.jsonl``) and,
when ``DS_ALERT_WEBHOOK_URL`` is set, are POSTed as JSON. A file rather than a DuckDB table:
the sensor runs in the daemon while a run may hold the warehouse's single-writer lock.
Each record is one ``os.write`` of one line to a file opened with O_APPEND, so concurrent
writers never interleave half lines.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .contract import landing_date

ALERTS_FILE = "alerts.jsonl"
# A run whose launcher alerts for it itself (`cli run`); the daemon's sensor skips it.
ALERTED_BY_TAG = "ds/alerted_by"
WEBHOOK_ENV = "DS_ALERT_WEBHOOK_URL"
MAX_MESSAGE_CHARS = 4000


# --------------------------------------------------------------------------- run failures
@dataclass(frozen=True)
class FailedStep:
    step_key: str
    error: str


@dataclass(frozen=True)
class AlertRecord:
    kind: str  # "run_failure"
    run_id: str
    job: str
    partition: str | None
    failed_steps: list[FailedStep]
    message: str
    created_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def to_json(self) -> dict:
        return asdict(self)


def _clip(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + " ...[cut]"


def root_error(err) -> str:
    """The user's error inside Dagster's wrapping: a step's SerializableErrorInfo says "Error
    occurred while executing op ..." and carries the real exception as its `cause`. Duck-typed
    (message / cls_name / cause) so this module needs no Dagster import."""
    if err is None:
        return ""
    seen = set()
    while getattr(err, "cause", None) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.cause
    message = (getattr(err, "message", None) or str(err)).strip()
    cls_name = getattr(err, "cls_name", None)
    if cls_name and not message.startswith(cls_name.split(".")[-1]) and ": " not in message[:80]:
        message = f"{cls_name}: {message}"
    return message


def run_partition(tags: Mapping[str, str]) -> str | None:
    """The partition a run was for, from its tags. A run of the nightly job (schedule, `cli
    run`, launchpad) carries `dagster/partition`; a run of an asset backfill (the UI's
    *Materialize -> a date range*) carries only the range it covers, one day here
    (`one_run_per_partition`), or "start...end" were it several."""
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start and end:
        return start if start == end else f"{start}...{end}"
    return start or end or None


def run_failure_record(run_id: str, job: str, partition: str | None,
                       failed_steps: Sequence[tuple[str, str | None]],
                       run_message: str | None) -> AlertRecord:
    """The alert for a failed run: which steps failed with which error."""
    steps = [FailedStep(k, _clip(e)) for k, e in failed_steps]
    if steps:
        summary = "; ".join(f"{s.step_key}: {s.error.splitlines()[0] if s.error else '?'}"
                            for s in steps)
    else:  # the run failed outside any step (killed worker, run monitoring, launch error)
        summary = _clip(run_message) or "run failed"
    return AlertRecord(kind="run_failure", run_id=run_id, job=job, partition=partition,
                       failed_steps=steps, message=_clip(summary))


def append_alert(alerts_dir: Path, record: AlertRecord | Mapping) -> Path:
    """Append one JSON line to `<alerts_dir>/alerts.jsonl` (created if needed)."""
    alerts_dir.mkdir(parents=True, exist_ok=True)
    path = alerts_dir / ALERTS_FILE
    payload = record.to_json() if isinstance(record, AlertRecord) else dict(record)
    line = (json.dumps(payload, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # a single write on an O_APPEND descriptor: never interleaved
    finally:
        os.close(fd)
    return path


def read_alerts(alerts_dir: Path) -> list[dict]:
    path = alerts_dir / ALERTS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def redact_url(url: str) -> str:
    """The webhook URL as it may be logged: scheme and host only. Its path and query carry
    the token (Slack's /services/T.../B.../<secret>)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.hostname or '?'}/…"
    return "<a URL without a scheme; not shown>"


def post_webhook(url: str, payload: Mapping, timeout: float = 10.0) -> str | None:
    """POST `payload` as JSON. Returns None on success, else the error as text (never
    raises: an unreachable chat server must not take the alerting down with it). The error
    never contains the URL's path or query, which hold the webhook's token."""
    if urllib.parse.urlsplit(url.strip()).scheme not in ("http", "https"):
        return (f"{WEBHOOK_ENV} is not an http(s) URL ({redact_url(url)}); write it as "
                "https://host/path")
    data = json.dumps(payload, sort_keys=True, default=str).encode()
    try:
        req = urllib.request.Request(url.strip(), data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                return f"HTTP {resp.status} from {redact_url(url)}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        text = f"{type(e).__name__}: {e}"
        for secret in {url, url.strip(), urllib.parse.urlsplit(url.strip()).path}:
            if secret and secret not in ("/", ""):
                text = text.replace(secret, redact_url(url))
        return f"{text} ({redact_url(url)})"
    return None


def deliver(alerts_dir: Path, record: AlertRecord) -> tuple[Path, str | None]:
    """The alert everywhere it goes: the alerts file, then the webhook when
    DS_ALERT_WEBHOOK_URL is set. Returns (file, webhook error or None). Used by the daemon's
    run-failure sensor and by `cli run` (cron shops have no daemon)."""
    path = append_alert(alerts_dir, record)
    url = os.environ.get(WEBHOOK_ENV)
    error = None
    if url:
        error = post_webhook(url, {"text": f"[decision-segments] {record.job} "
                                           f"{record.partition or ''} failed: {record.message}",
                                   **record.to_json()})
    return path, error


# --------------------------------------------------------------------------- freshness
# How each table's exports land, which decides what "no file today" means:
# - "feed": a file every day something happened (orders, events, spend, rates). Silence past
#   the tolerance is stale (ERROR for a required source).
# - "delta": files land only when something changed (new or changed customers, tickets,
#   returns, activations). No file means no change, not a missing export. A closed cohort's
#   shop lands no customers file for months while its orders land daily. Such a table is
#   stale only when the data says a change is missing: for the customer master, orders that
#   landed within the tolerance and reference customers that are in no customers file
#   (more than DS_FRESHNESS_UNKNOWN_SHARE, default 5 %, of them).
# - "reference": catalogue data that lands when it changes (creatives); never stale.
LANDING: dict[str, str] = {
    "crm__customers": "delta",
    "crm__orders": "feed",
    "crm__order_lines": "feed",
    "crm__support_tickets": "delta",
    "web__events": "feed",
    "ads__creatives": "reference",
    "ads__spend": "feed",
    "ads__exposures": "feed",
    "returns__returns": "delta",
    "fx__rates": "feed",
    "marketing__activation_log": "delta",
}
# Days a table may go without a new file before it is judged (configured tolerance). Override
# per table with DS_FRESHNESS_MAX_LAG_DAYS="crm__orders=7,web__events=3". The tolerance in
# force is widened to what the table's own landing history shows: one day more than the 95th
# percentile of the gaps between its files over the last 120 days (a weekly rates feed has
# 7-day gaps and is stale after 8 silent days, not 3), so the check judges each table against
# what its exports actually look like.
MAX_LAG_DAYS: dict[str, int | None] = {
    "crm__customers": 30,
    "crm__orders": 3,
    "crm__order_lines": 3,
    "crm__support_tickets": 14,
    "web__events": 2,
    "ads__creatives": None,
    "ads__spend": 2,
    "ads__exposures": 2,
    "returns__returns": 14,
    "fx__rates": 3,
    "marketing__activation_log": 14,
}
DEFAULT_MAX_LAG_DAYS = 2
HISTORY_DAYS = 120
DEFAULT_UNKNOWN_SHARE = 0.05


def configured_max_lag_days(raw_table: str) -> int | None:
    """The configured tolerance of a table: DS_FRESHNESS_MAX_LAG_DAYS, else MAX_LAG_DAYS."""
    for item in os.environ.get("DS_FRESHNESS_MAX_LAG_DAYS", "").split(","):
        name, _, days = item.partition("=")
        if name.strip() == raw_table and days.strip():
            try:
                return int(days)
            except ValueError:
                raise ValueError(f"DS_FRESHNESS_MAX_LAG_DAYS: {item.strip()!r} is not "
                                 "table=days") from None
    return MAX_LAG_DAYS.get(raw_table, DEFAULT_MAX_LAG_DAYS)


def unknown_share_tolerated() -> float:
    return float(os.environ.get("DS_FRESHNESS_UNKNOWN_SHARE", DEFAULT_UNKNOWN_SHARE))


@dataclass(frozen=True)
class Freshness:
    raw_table: str
    as_of: dt.date
    optional: bool
    latest_file: dt.date | None  # newest file dated <= as_of
    files: int  # files dated <= as_of
    max_lag_days: int | None  # the tolerance in force (configured, widened by the history)
    status: str  # "fresh" | "late" (warn) | "stale" (error) | "absent" (optional, never landed)
    reason: str
    landing: str = "feed"  # feed | delta | reference
    configured_max_lag_days: int | None = None
    usual_gap_days: float | None = None  # 95th percentile of the gaps between files

    @property
    def lag_days(self) -> int | None:
        return None if self.latest_file is None else (self.as_of - self.latest_file).days


def _usual_gap(dates: list[dt.date], as_of: dt.date) -> float | None:
    recent = sorted(d for d in dates if (as_of - d).days <= HISTORY_DAYS)
    if len(recent) < 3:
        return None
    gaps = np.diff(np.array([d.toordinal() for d in recent]))
    return float(np.percentile(gaps, 95))


def source_freshness(folder: Path, raw_table: str, as_of: dt.date, optional: bool,
                     max_lag_days: int | None = ...,  # type: ignore[assignment]
                     unknown_reference: tuple[int, int] | None = None) -> Freshness:
    """Did the files of one source table land for `as_of`? Reads the landing folder
    (`<raw>/<source>/<table>/<YYYY-MM-DD>.csv`); files dated after `as_of` are ignored, so a
    backfilled day is judged as it was that night. ``unknown_reference``: for the customer
    master, (orders landed within the tolerance, those of them referencing customers in no
    customers file), the evidence a delta table is judged by."""
    configured = configured_max_lag_days(raw_table) if max_lag_days is ... else max_lag_days
    landing = LANDING.get(raw_table, "feed")
    dates = []
    if folder.is_dir():
        for p in folder.iterdir():
            d = landing_date(p.name)  # None for an impossible date: the ingest names the file
            if d is not None and d <= as_of:
                dates.append(d)
    latest = max(dates) if dates else None
    usual = _usual_gap(dates, as_of)
    tolerance = configured
    if configured is not None and usual is not None:
        tolerance = max(configured, int(np.ceil(usual)) + 1)

    def result(status: str, reason: str) -> Freshness:
        return Freshness(raw_table, as_of, optional, latest, len(dates), tolerance,
                         status, reason, landing, configured, usual)

    if latest is None:
        if optional:
            return result("absent", f"optional source: no file landed by {as_of}")
        return result("stale", f"required source: no file landed by {as_of}")
    lag = (as_of - latest).days
    if lag == 0:
        return result("fresh", f"file for {as_of} landed")
    if tolerance is None or landing == "reference":
        return result("fresh", f"reference data, last file {latest}")
    widened = ("" if tolerance == configured else
               f" (configured {configured}, widened to the usual longest gap between its "
               f"files, {usual:g} days, plus one)")
    if landing == "delta":
        if lag <= tolerance:
            return result("fresh", f"no file since {latest} ({lag} day(s)): files land only "
                                   "when something changed")
        if unknown_reference is None:
            return result("fresh", f"no file for {lag} days (last {latest}): a delta export "
                                   "(files land only when something changed)")
        orders, unknown = unknown_reference
        share = unknown / orders if orders else 0.0
        if share > unknown_share_tolerated():
            return result("stale", f"no file for {lag} days (last {latest}) and {unknown:,} of "
                                   f"the {orders:,} orders landed in the last {tolerance} days "
                                   f"({share:.0%}) reference customers in no customers file: "
                                   "new customers are missing")
        return result("fresh", f"no file for {lag} days (last {latest}): a delta export, no "
                               f"file means no change; the {orders:,} orders landed in the last "
                               f"{tolerance} days reference known customers"
                               + (f" (all but {unknown:,})" if unknown else ""))
    if lag > tolerance:
        return result("stale", f"no file for {lag} days (last {latest}); "
                               f"tolerated: {tolerance}{widened}")
    return result("late", f"no file dated {as_of} (last {latest}, {lag} day(s) ago; "
                          f"stale after {tolerance}{widened})")
