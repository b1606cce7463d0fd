"""Where things live. Every path is resolved from this file or from an environment variable,
never from the current working directory.

- DS_DATA_DIR: the data folder (default: <project>/data)
- DS_DUCKDB_PATH: the warehouse file (default: <data>/warehouse.duckdb)
- DS_PARTITION_START: first daily partition (default 2025-01-01)
- DS_DBT_PROJECT_DIR: the dbt project (default: <project>/dbt)
"""

from __future__ import annotations

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


def partition_start() -> str:
    return os.environ.get("DS_PARTITION_START", "2025-01-01")
