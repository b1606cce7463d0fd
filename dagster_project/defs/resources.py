"""Resources: the DuckDB warehouse, the dbt CLI and the data paths."""


import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from dagster_project import settings
from dagster_project.defs.dbt.project import ProjectDbtCliResource, dbt_executable, dbt_project
from dagster_project.defs.observability.retry import _current_step, retry_on_lock
from dagster_project.lib.retry import is_transient
from dagster_project.lib.warehouse import remove_stale_spill_files


class DataPaths(dg.ConfigurableResource):
    """Folders the pipeline reads and writes (defaults from settings / environment)."""

    data_dir: str

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def private_warehouse(database: str) -> None:
    """The warehouse holds raw PII (emails, phones, names): its file (and write-ahead log)
    is for the owner only, 0600, whatever the umask made of it."""
    for p in (Path(database), Path(f"{database}.wal")):
        if p.exists() and p.stat().st_mode & 0o077:
            p.chmod(0o600)


class WarehouseLocked(RuntimeError):
    """Another process kept the warehouse file locked through every connection retry."""


@contextmanager
def _connection(duckdb) -> Iterator:
    """`duckdb.get_connection()` (which retries a locked file for about 100 s with back-off),
    its final lock error said plainly: which file, which process holds it, what to do."""
    cm = duckdb.get_connection()
    try:
        con = cm.__enter__()
    except Exception as exc:  # noqa: BLE001  (re-raised as is unless it is the lock)
        if not is_transient(exc):
            raise
        holder = re.search(r"Conflicting lock is held in (.+?)(?:\. See|$)", str(exc))
        raise WarehouseLocked(
            f"the warehouse {duckdb.database} is locked by another process"
            f"{' (' + holder.group(1) + ')' if holder else ''} and stayed locked through about "
            "100 s of retries. DuckDB allows one writing process per file: close that process "
            "(a DuckDB shell, a notebook, a second `dagster dev`) and run again.") from exc
    try:
        yield con
    finally:
        cm.__exit__(None, None, None)


def _log():
    step = _current_step()
    return step.log if step is not None else logging.getLogger(__name__)


@contextmanager
def warehouse(duckdb, retry_step: bool = True) -> Iterator:
    """`duckdb.get_connection()` that also closes the connection when the body raises:
    DuckDBResource closes it only on success, and the traceback Dagster keeps of a failed
    step would hold the file open (and locked) in this process. A lock that outlasts the
    connection's retries is a `WarehouseLocked` error naming the holder; inside a step (and
    unless `retry_step` is False) it retries the whole step, 15/30/60 s later, first
    (defs/observability/retry.py)."""
    with retry_on_lock() if retry_step else nullcontext(), _connection(duckdb) as con:
        try:
            private_warehouse(duckdb.database)
            stale = remove_stale_spill_files(duckdb.database)
            if stale:
                _log().warning(
                    f"removed {len(stale)} spill file(s) of a process that died "
                    f"({sum(stale.values()) / 2**20:,.0f} MiB freed): " + ", ".join(stale))
            yield con
        finally:
            con.close()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "duckdb": DuckDBResource(
                database=str(settings.duckdb_path()),
                # the same cap as dbt's profile: spill to disk rather than take 80% of RAM
                connection_config={"memory_limit": settings.duckdb_memory_limit()},
            ),
            "dbt": ProjectDbtCliResource(
                project_dir=dbt_project,
                profiles_dir=str(settings.DBT_DIR),
                dbt_executable=dbt_executable(),
            ),
            "paths": DataPaths(data_dir=str(settings.data_dir())),
        }
    )
