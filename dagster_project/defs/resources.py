"""Resources: the DuckDB warehouse, the dbt CLI and the data paths."""


from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from dagster_project import settings
from dagster_project.defs.dbt.project import ProjectDbtCliResource, dbt_executable, dbt_project


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


@contextmanager
def warehouse(duckdb) -> Iterator:
    """`duckdb.get_connection()` that also closes the connection when the body raises:
    DuckDBResource closes it only on success, and the traceback Dagster keeps of a failed
    step would hold the file open (and locked) in this process."""
    with duckdb.get_connection() as con:
        try:
            private_warehouse(duckdb.database)
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
