"""The code location: every asset, check, schedule and sensor under defs/, plus the executor.

Executor: in-process. DuckDB allows one writing process per database file and a second open
fails at once with "Could not set lock on file" (PITFALLS.md); the default multiprocess
executor would run independent steps (e.g. two asset checks) in parallel processes against
the same file. In-process runs the steps of a run one after another in one process. Across
runs (a backfill launches one run per partition) the `duckdb_warehouse` pool, limited to 1
in dagster.yaml, keeps a second run from opening the file while one is writing.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_project import settings
from dagster_project.defs.observability.freshness import with_freshness_policies


@dg.definitions
def defs() -> dg.Definitions:
    # dbt-duckdb opens the file from a subprocess: give it the same absolute path we use.
    import os

    os.environ.setdefault("DS_DUCKDB_PATH", str(settings.duckdb_path()))
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # Freshness policies on the consumer-facing assets (defs/observability/freshness.py).
    loaded = with_freshness_policies(loaded)
    return dg.Definitions.merge(loaded, dg.Definitions(executor=dg.in_process_executor))
