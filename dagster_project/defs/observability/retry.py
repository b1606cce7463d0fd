"""Step-level retry of DuckDB lock errors (and only those): see lib/retry.py for why."""

import contextlib

import dagster as dg

from dagster_project.lib.retry import MAX_LOCK_RETRIES, is_transient, lock_backoff_seconds


@contextlib.contextmanager
def retry_on_lock(context, max_retries: int = MAX_LOCK_RETRIES):
    """Wrap a step body: a DuckDB "Could not set lock on file" error becomes
    `dg.RetryRequested` with exponential back-off; every other error propagates unchanged
    (data errors fail the step at once).

        with retry_on_lock(context):
            with duckdb.get_connection() as con: ...
    """
    try:
        yield
    except dg.RetryRequested:
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        wait = lock_backoff_seconds(context.retry_number)
        context.log.warning(f"DuckDB file is locked by another process; retry "
                            f"{context.retry_number + 1}/{max_retries} in {wait:.0f}s: {exc}")
        raise dg.RetryRequested(max_retries=max_retries, seconds_to_wait=wait) from exc
