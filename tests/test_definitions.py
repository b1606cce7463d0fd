import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from dagster_project import settings
from dagster_project.lib.contract import TABLES
from dagster_project.lib.dbt_vars import dbt_vars
from dagster_project.lib.features import LABELS


@pytest.fixture(scope="module")
def definitions():
    from dagster_project.definitions import defs

    return defs()


def test_definitions_load_and_validate(definitions):
    dg.Definitions.validate_loadable(definitions)


def test_every_expected_asset_key_is_present_dbt_models_included(definitions):
    keys = {k.to_user_string() for k in definitions.resolve_asset_graph().get_all_asset_keys()}
    expected = {f"raw/{t.raw_name}" for t in TABLES} | {
        "staging/stg_crm__orders", "staging/stg_web__events", "intermediate/int_orders__economics",
        "intermediate/int_identity__anonymous_map", "marts/customer_features",
        "marts/customer_labels", "marts/customer_profile", "customer_states",
        "propensity_scores", *{f"propensity_model/{t}" for t in LABELS},
    }
    missing = expected - keys
    assert not missing, f"missing asset keys: {sorted(missing)}"


def test_dbt_sources_are_the_ingest_assets(definitions):
    graph = definitions.resolve_asset_graph()
    stg = graph.get(dg.AssetKey(["staging", "stg_crm__orders"]))
    assert dg.AssetKey(["raw", "crm__orders"]) in stg.parent_keys


def test_layers_run_in_the_cards_order(definitions):
    graph = definitions.resolve_asset_graph()
    states = graph.get(dg.AssetKey("customer_states"))
    assert dg.AssetKey(["marts", "customer_features"]) in states.parent_keys
    model = graph.get(dg.AssetKey(["propensity_model", "purchase_30d"]))
    assert dg.AssetKey("customer_states") in model.parent_keys


def test_nightly_schedule_targets_the_partitioned_job(definitions):
    schedule = definitions.get_schedule_def("nightly_schedule")
    assert schedule.job_name == "nightly"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_all_assets_share_the_duckdb_pool(definitions):
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            assert node.pools == {"duckdb_warehouse"}, key


def test_every_check_is_partitioned_like_the_asset_it_checks(definitions):
    """An unpartitioned check on a partitioned asset leaves two records per run in the UI's
    check history: a planned one (with the partition) shown as "Skipped", and the result
    (without a partition)."""
    repo = definitions.get_repository_def()
    graph = definitions.resolve_asset_graph()
    assert repo.asset_checks_defs_by_key
    for key, checks in repo.asset_checks_defs_by_key.items():
        spec = next(s for s in checks.check_specs if s.key == key)
        assert spec.partitions_def == graph.get(key.asset_key).partitions_def, key


def test_dbt_vars_carry_the_partition_date_and_reject_garbage():
    assert json.loads(dbt_vars("2025-06-30")) == {"as_of_date": "2025-06-30"}
    assert json.loads(dbt_vars("2025-06-30", n_cutoffs=4))["n_cutoffs"] == 4
    with pytest.raises(ValueError):
        dbt_vars("2025-06-30; drop table x")


def test_dbt_models_are_described_by_their_yml_or_their_opening_sql_comment(definitions):
    """A model without a yml description would read "dbt model <name>" in the asset graph and
    the catalog; it gets the comment its SQL opens with (after a config block), raw SQL after."""
    graph = definitions.resolve_asset_graph()

    def description(*path):
        return graph.get(dg.AssetKey(list(path))).description or ""

    assert description("staging", "stg_crm__orders").startswith(
        "Orders in UTC with amounts in the reporting currency. Dedupe rule:")
    # config block first, then the comment
    assert description("marts", "customer_profile").startswith("One row per (as_of_date, ")
    # a yml description wins
    assert description("marts", "customer_features").startswith("Point-in-time customer features.")
    assert "#### Raw SQL:" in description("staging", "stg_crm__orders")
    for key in graph.get_all_asset_keys():
        if key.path[0] in ("staging", "intermediate", "marts"):
            assert not description(*key.path).startswith("dbt model"), key


def test_leading_comment_of_a_model():
    from dagster_project.defs.dbt.translator import leading_comment

    sql = "{{\n  config(materialized='table')\n}}\n-- First line,\n--  second.\nselect 1 -- x\n"
    assert leading_comment(sql) == "First line, second."
    assert leading_comment("-- only\n-- a comment") == "only a comment"
    assert leading_comment("select 1\n-- late comment") == ""


@pytest.mark.slow
def test_dagster_dev_prepares_the_dbt_project_with_the_venvs_dbt(tmp_path):
    """`.venv/bin/dagster dev` (`make dev`) with the venv not activated: dbt is not on PATH, and
    dagster-dbt's own preparer (plain `dbt parse`) failed, so the code location did not load."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    no_dbt = [d for d in env.get("PATH", "").split(os.pathsep) if d and not Path(d, "dbt").exists()]
    # a copy of the dbt project, so that dbt/target (read by other test processes) is left be
    project = tmp_path / "dbt"
    shutil.copytree(settings.DBT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    env.update(PATH=os.pathsep.join(no_dbt), DAGSTER_IS_DEV_CLI="1",
               DS_DUCKDB_PATH=str(tmp_path / "p.duckdb"), DS_DBT_PROJECT_DIR=str(project))
    code = ("import dagster_project.defs.dbt.project as p; "
            "print(p.dbt_project.manifest_path.parent.parent.parent == "
            f"__import__('pathlib').Path({str(tmp_path)!r}), p.dbt_project.manifest_path.exists())")
    proc = subprocess.run([sys.executable, "-c", code], check=False, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "True True", proc.stdout[-2000:]


def test_the_dbt_resource_knows_the_version_of_the_dbt_it_runs(definitions):
    """ProjectDbtCliResource takes dbt's version from the installed dbt-core instead of running
    `dbt --version` each run; it must be the version of the executable it runs."""
    resource = definitions.resources["dbt"]
    out = subprocess.run([resource.dbt_executable, "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert f"installed: {resource._cli_version}" in out
