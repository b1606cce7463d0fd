"""Session fixtures: the dbt manifest, one small generated dataset, and one full nightly run
of it through Dagster (in-process), shared by the tests that only read its outputs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .helpers import END, make_dataset, run_dbt


# The tests' datasets start on 2025-01-01 (helpers.START) and many tests share one process,
# where the partitions are fixed when the definitions are first imported: configure the first
# partition rather than derive it from whichever raw folder was seen first. Tests of the
# derived default run the CLI in a subprocess without this variable.
os.environ.setdefault("DS_PARTITION_START", "2025-01-01")


def pytest_configure(config):
    """Tests build the dbt manifest themselves (`dbt parse`), as CI does: once, in the main
    process, before any pytest-xdist worker starts (two workers writing dbt/target at once
    could hand a third reader a half-written manifest)."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has parsed
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc = run_dbt(["parse", "--quiet"], DS_DUCKDB_PATH=str(Path(tmp) / "p.duckdb"))
    if proc.returncode != 0:
        raise pytest.UsageError(f"dbt parse failed:\n{proc.stdout}{proc.stderr}")


# The two longest files, longest first (each 5-10 min on 2 cores): they start at once, one
# on each worker, and the rest of the suite fills in around them. Started among the other
# slow files (alphabetically), they ran last, together, with nothing to fill in beside them.
LONGEST_FILES = ("test_models_at_scale.py", "test_ops_backfill.py")


def pytest_collection_modifyitems(config, items):
    """The longest files first, then files holding a slow test, then the rest, so that with
    two workers no long file starts last and runs alone at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:
        if item.path.name in LONGEST_FILES:
            return 0, LONGEST_FILES.index(item.path.name)
        return (1 if item.path in slow else 2), 0

    items.sort(key=rank)  # stable: order kept otherwise


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A small full dataset (all sources, default messiness and archetype share), generated once."""
    # 3,000 customers: about 90 planted customers per exclusion archetype, enough to measure
    # precision and recall of each audience
    return make_dataset(tmp_path_factory.mktemp("dataset"), customers=3000, seed=11)


# The production minimum segment size (500) would merge every decision segment of 3,000
# customers into the default, and the gate would then refuse the publish. 50 (1.7%): at 100,
# segments of 70-90 customers merged or not depending on small changes of the models.
NIGHTLY_RUN_CONFIG = {"ops": {"segments": {"config": {"min_segment_size": 50}}}}


@pytest.fixture(scope="session")
def nightly_run(dataset, tmp_path_factory):
    """The whole nightly job for END, in-process through Dagster, on a copy of the dataset."""
    import dagster as dg

    root = tmp_path_factory.mktemp("nightly")
    shutil.copytree(dataset / "raw", root / "raw")
    env = {"DS_DATA_DIR": str(root), "DS_DUCKDB_PATH": str(root / "warehouse.duckdb")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from dagster_project.definitions import defs

        instance = dg.DagsterInstance.ephemeral()
        # 1500 customers: with the production minimum segment size (500) every decision
        # segment would be merged into the default and the gate would stop the publish.
        result = defs().resolve_job_def("nightly").execute_in_process(
            partition_key=END.isoformat(), instance=instance, raise_on_error=False,
            run_config=NIGHTLY_RUN_CONFIG)
        yield {"root": root, "db": root / "warehouse.duckdb", "result": result,
               "instance": instance, "truth": dataset / "truth"}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
