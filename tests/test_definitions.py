import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

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


def test_dbt_vars_carry_the_partition_date_and_reject_garbage():
    assert json.loads(dbt_vars("2025-06-30")) == {"as_of_date": "2025-06-30"}
    assert json.loads(dbt_vars("2025-06-30", n_cutoffs=4))["n_cutoffs"] == 4
    with pytest.raises(ValueError):
        dbt_vars("2025-06-30; drop table x")


@pytest.mark.slow
def test_dagster_dev_prepares_the_dbt_project_with_the_venvs_dbt(tmp_path):
    """`.venv/bin/dagster dev` (`make dev`) with the venv not activated: dbt is not on PATH, and
    dagster-dbt's own preparer (plain `dbt parse`) failed, so the code location did not load."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    no_dbt = [d for d in env.get("PATH", "").split(os.pathsep) if d and not Path(d, "dbt").exists()]
    env.update(PATH=os.pathsep.join(no_dbt), DAGSTER_IS_DEV_CLI="1",
               DS_DUCKDB_PATH=str(tmp_path / "p.duckdb"))
    code = ("import dagster_project.defs.dbt.project as p; "
            "print(p.dbt_project.manifest_path.exists())")
    proc = subprocess.run([sys.executable, "-c", code], check=False, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("True")
