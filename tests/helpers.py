"""Shared helpers for tests: generate small datasets, build a warehouse with ingest + dbt."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from dagster_project import settings
from dagster_project.lib.currency import reporting_currency
from dagster_project.lib.dbt_vars import dbt_state_dir, dbt_vars
from dagster_project.lib.ingest import ingest_partition
from dagster_project.synthetic import Config, generate

END = dt.date(2025, 6, 30)
START = dt.date(2025, 1, 1)


def make_dataset(root: Path, customers: int = 1500, seed: int = 11, **kw) -> Path:
    """Generate sources under root/raw and truth under root/truth; returns root."""
    generate(Config(customers=customers, start=kw.pop("start", START), end=kw.pop("end", END),
                    seed=seed, out=root / "raw", truth=root / "truth", **kw))
    return root


def run_dbt(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """The venv's dbt on this project (a subprocess, like dagster-dbt), `env` added to ours."""
    exe = Path(sys.executable).parent / "dbt"
    return subprocess.run(
        [str(exe), *args, "--project-dir", str(settings.DBT_DIR), "--profiles-dir",
         str(settings.DBT_DIR)], env={**os.environ, **env}, capture_output=True, text=True,
        check=False)


def dbt_build(db: Path, as_of: dt.date, select: str | None = None) -> None:
    """Run `dbt build` for one partition against `db`, its artifacts beside the warehouse as
    the dbt asset writes them (dbt/target is shared by every test process), with the vars the
    dbt asset passes (the partition and its reporting currency)."""
    currency = "EUR"
    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
        try:
            currency, _ = reporting_currency(con, as_of)
        finally:
            con.close()
    args = ["build", "--vars", dbt_vars(as_of.isoformat(), reporting_currency=currency),
            "--quiet"]
    if select:
        args += ["--select", select]
    proc = run_dbt(args, DS_DUCKDB_PATH=str(db), DBT_TARGET_PATH=str(dbt_state_dir(db)))
    if proc.returncode != 0:
        raise AssertionError(f"dbt build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")


def build_warehouse(raw: Path, db: Path, as_of: dt.date, select: str | None = None) -> None:
    con = duckdb.connect(str(db))
    try:
        ingest_partition(con, raw, as_of)
    finally:
        con.close()
    dbt_build(db, as_of, select)


def query(db: Path, sql: str, params: list | None = None):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def truth_summary(root: Path) -> dict:
    return json.loads((root / "truth" / "summary.json").read_text())


def load_script(name: str):
    """A module of scripts/ (not a package), e.g. load_script("model_ceiling")."""
    path = settings.PROJECT_ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
