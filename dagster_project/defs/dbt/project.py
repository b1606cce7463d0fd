"""The dbt project. The manifest is built by `make prepare` (dbt parse), by the test session
fixture, or by `dagster dev` (prepare_if_dev) — never at import time otherwise."""

import importlib.metadata
import shutil
import sys
from functools import cached_property
from pathlib import Path

from dagster_dbt import DagsterDbtProjectPreparer, DbtCliResource, DbtProject
from packaging import version

from dagster_project import settings


def dbt_executable() -> str:
    """The dbt next to this interpreter (the project's venv), so an un-activated venv works."""
    local = Path(sys.executable).parent / "dbt"
    return str(local) if local.exists() else (shutil.which("dbt") or "dbt")


class ProjectDbtCliResource(DbtCliResource):
    """dagster-dbt's DbtCliResource without two costs it pays on every run for things this
    project does not use (dagster-dbt 0.29.27, measured at 800 customers: 5-8 s of a 22 s
    dbt step):

    - it runs `dbt --version` to tell dbt Core from the Fusion engine: a second dbt start-up
      plus a PyPI lookup, about 5 s. The dbt it runs is this venv's (``dbt_executable``), so
      the installed dbt-core's version is the answer.
    - it opens a dbt adapter in-process (about 2 s) for ``fetch_row_counts`` and
      ``fetch_column_metadata``, which cannot run on DuckDB while dbt holds the file's lock;
      the row counts are read after dbt exits (``dbt/assets.py``).
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 (dagster-dbt's signature)
        return None


class VenvDbtPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's own preparer runs `dbt parse` with the `dbt` found on PATH, which is not
    there when `.venv/bin/dagster dev` (or `make dev`) runs with the venv not activated: the
    code location then fails to load. This one runs the venv's dbt, like the dbt resource."""

    def prepare(self, project: DbtProject) -> None:
        DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
            ["parse", "--quiet"], target_path=project.target_path).wait()


dbt_project = DbtProject(project_dir=settings.DBT_DIR, profiles_dir=settings.DBT_DIR)
VenvDbtPreparer().prepare_if_dev(dbt_project)
