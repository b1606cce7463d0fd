"""Where things live. Every path is resolved from this file or from an environment variable,
never from the current working directory.

- DS_DATA_DIR: the data folder (default: <project>/data)
- DS_DUCKDB_PATH: the warehouse file (default: <data>/warehouse.duckdb)
- DS_PARTITION_START: first daily partition (default: the earliest landed file's date)
- DS_REPORTING_CURRENCY: the currency money is reported in (default: lib/currency.py)
- DS_DBT_PROJECT_DIR: the dbt project (default: <project>/dbt)
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# DS_DBT_PROJECT_DIR: another copy of the dbt project (tests prepare one without touching
# dbt/target, which other test processes read)
DBT_DIR = Path(os.environ.get("DS_DBT_PROJECT_DIR", PROJECT_ROOT / "dbt")).resolve()


def data_dir() -> Path:
    return Path(os.environ.get("DS_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def duckdb_path() -> Path:
    return Path(os.environ.get("DS_DUCKDB_PATH", data_dir() / "warehouse.duckdb")).resolve()


def raw_dir() -> Path:
    return data_dir() / "raw"


def truth_dir() -> Path:
    return data_dir() / "truth"


def models_dir() -> Path:
    return data_dir() / "models"


def exports_dir() -> Path:
    return data_dir() / "exports"


def reports_dir() -> Path:
    return data_dir() / "reports"


def duckdb_memory_limit() -> str:
    return os.environ.get("DS_DUCKDB_MEMORY_LIMIT", "3GB")


def earliest_landed_file(raw: Path | None = None) -> dt.date | None:
    """The earliest landing date of any file ``<raw>/<source>/<table>/<YYYY-MM-DD>.csv``
    (names only: no file is opened), or None when nothing has landed."""
    from dagster_project.lib.contract import landing_date

    raw = raw_dir() if raw is None else raw
    earliest = None
    if not raw.is_dir():
        return None
    for source in os.scandir(raw):
        if not source.is_dir():
            continue
        for table in os.scandir(source.path):
            if not table.is_dir():
                continue
            for f in os.scandir(table.path):
                d = landing_date(f.name)  # None for e.g. 2026-02-30.csv: the ingest names it
                if d is not None and (earliest is None or d < earliest):
                    earliest = d
    return earliest


def partition_start_and_source() -> tuple[str, str]:
    """The first daily partition and where it comes from. DS_PARTITION_START when set; else
    the earliest landed file under the raw folder, so a shop whose history starts in 2010 can
    run (and backfill) its first night without configuring anything; else, with nothing
    landed yet, yesterday (UTC), the night the schedule will run first. Read when the code
    location loads: files landing with an earlier date take effect at the next reload."""
    if os.environ.get("DS_PARTITION_START"):
        return os.environ["DS_PARTITION_START"], "DS_PARTITION_START"
    earliest = earliest_landed_file()
    if earliest is not None:
        return earliest.isoformat(), f"the earliest landed file in {raw_dir()}"
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return yesterday.isoformat(), f"no file has landed in {raw_dir()} yet: yesterday (UTC)"


def partition_start() -> str:
    return partition_start_and_source()[0]
