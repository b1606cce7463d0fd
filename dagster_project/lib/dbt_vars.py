"""The `--vars` dbt receives for a partition: built here, in one place, and tested."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path


def dbt_vars(partition_key: str, **overrides: object) -> str:
    """JSON vars for `dbt build`: the validated as_of_date plus any overrides."""
    as_of = dt.date.fromisoformat(partition_key)  # raises on anything but YYYY-MM-DD
    return json.dumps({"as_of_date": as_of.isoformat(), **overrides}, sort_keys=True)


def dbt_state_dir(warehouse: str | Path) -> Path:
    """dbt's target folder for a warehouse (``data/warehouse.dbt_target`` beside
    ``data/warehouse.duckdb``): one per warehouse, reused by every run. dagster-dbt's default
    is a new folder under ``dbt/target`` per run (manifest, compiled SQL, results and log:
    about 5 MB each), which nothing removes."""
    p = Path(warehouse)
    return p.with_name(f"{p.stem}.dbt_target")
