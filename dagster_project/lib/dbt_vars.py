"""The `--vars` dbt receives for a partition: built here, in one place, and tested."""

from __future__ import annotations

import datetime as dt
import json


def dbt_vars(partition_key: str, **overrides: object) -> str:
    """JSON vars for `dbt build`: the validated as_of_date plus any overrides."""
    as_of = dt.date.fromisoformat(partition_key)  # raises on anything but YYYY-MM-DD
    return json.dumps({"as_of_date": as_of.isoformat(), **overrides}, sort_keys=True)
