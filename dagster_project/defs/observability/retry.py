"""Step-level retry of DuckDB lock errors (and only those): see lib/retry.py for why.

Every step gets it: `defs/resources.warehouse` (the one way a step opens the warehouse)
applies it to the connection, and the dbt step to dbt's build. Outside a step (a script, a
test) the lock error is raised as is."""

import contextlib

import dagster as dg

from dagster_project.lib.retry import MAX_LOCK_RETRIES, is_transient, lock_backoff_seconds


def _current_step():
    """The running step's context, or None outside a step."""
    try:
        return dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return None


@contextlib.contextmanager
def retry_on_lock(context=None, max_retries: int = MAX_LOCK_RETRIES):
    """Wrap a step body: a DuckDB "Could not set lock on file" error becomes
    `dg.RetryRequested` with exponential back-off; every other error propagates unchanged
    (data errors fail the step at once). `context`: the step's (default: the running step;
    outside a step the error propagates unchanged).

        with retry_on_lock(context):
            events = list(dbt_invocation.stream())
    """
    try:
        yield
    except dg.RetryRequested:
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        context = context if context is not None else _current_step()
        if context is None:
            raise
        wait = lock_backoff_seconds(context.retry_number)
        context.log.warning(f"DuckDB file is locked by another process; retry "
                            f"{context.retry_number + 1}/{max_retries} in {wait:.0f}s: {exc}")
        raise dg.RetryRequested(max_retries=max_retries, seconds_to_wait=wait) from exc
