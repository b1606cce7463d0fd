"""The dbt project. The manifest is built by `make prepare` (dbt parse), by the test session
fixture, or by `dagster dev` (prepare_if_dev) — never at import time otherwise."""

from dagster_dbt import DbtProject

from dagster_project import settings

dbt_project = DbtProject(project_dir=settings.DBT_DIR, profiles_dir=settings.DBT_DIR)
dbt_project.prepare_if_dev()
