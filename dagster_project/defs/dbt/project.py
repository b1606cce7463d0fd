"""The dbt project. The manifest is built by `make prepare` (dbt parse), by the test session
fixture, or by `dagster dev` (prepare_if_dev) — never at import time otherwise."""

import shutil
import sys
from pathlib import Path

from dagster_dbt import DagsterDbtProjectPreparer, DbtCliResource, DbtProject

from dagster_project import settings


def dbt_executable() -> str:
    """The dbt next to this interpreter (the project's venv), so an un-activated venv works."""
    local = Path(sys.executable).parent / "dbt"
    return str(local) if local.exists() else (shutil.which("dbt") or "dbt")


class VenvDbtPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's own preparer runs `dbt parse` with the `dbt` found on PATH, which is not
    there when `.venv/bin/dagster dev` (or `make dev`) runs with the venv not activated: the
    code location then fails to load. This one runs the venv's dbt, like the dbt resource."""

    def prepare(self, project: DbtProject) -> None:
        DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
            ["parse", "--quiet"], target_path=project.target_path).wait()


dbt_project = DbtProject(project_dir=settings.DBT_DIR, profiles_dir=settings.DBT_DIR)
VenvDbtPreparer().prepare_if_dev(dbt_project)
