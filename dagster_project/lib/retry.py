"""Which failures are worth retrying.

Only DuckDB's file-lock error is transient here: a second process (an analyst's DuckDB shell,
a BI tool, a run that bypassed the pool) holds the warehouse file, and opening it fails at once
with "IO Error: Could not set lock on file ..." instead of waiting (PITFALLS.md). Retrying after
a pause usually succeeds. Everything else -- a file missing a required column (IngestError), a
failed quality gate, a refused publish, a bug -- fails the same way on every attempt; retrying
it only delays the alert, so it is never retried.

Why step-level retries raised from code rather than a `RetryPolicy`: Dagster's RetryPolicy
retries every exception of the step, data errors included, and cannot be told which ones.
"""

from __future__ import annotations

LOCK_MARKERS = ("could not set lock on file", "conflicting lock is held")

MAX_LOCK_RETRIES = 3


def is_transient(exc: BaseException | str | None) -> bool:
    """True for DuckDB's lock error (also when wrapped: the cause chain and the message of
    a wrapping exception are searched), False for anything else."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, str):
            return any(m in exc.lower() for m in LOCK_MARKERS)
        seen.add(id(exc))
        if any(m in str(exc).lower() for m in LOCK_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def lock_backoff_seconds(retry_number: int, base: float = 15.0, cap: float = 300.0) -> float:
    """Exponential back-off for the n-th retry (0-based): 15 s, 30 s, 60 s ... capped."""
    return min(cap, base * (2 ** max(0, retry_number)))
