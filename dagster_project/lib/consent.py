"""Marketing consent as known at the time of the run, for everything a run writes now.

The rule (the README, "Consent"):

* Only a clear yes is consent: a value in the dbt var ``consent_yes`` (trimmed, any case).
  ``false``, ``opt-out``, an empty field or any other text is no consent. dbt's staging
  (macro ``consent_given``) and this module read the same list from ``dbt_project.yml``.
* A customer's consent is the one in their **latest landed** version: a later file wins
  whatever its ``updated_at`` says (a withdrawal re-sent with an unchanged ``updated_at`` still
  withdraws); within one file the latest ``updated_at``, then the last line. An exact re-send
  of an earlier version (same ``updated_at`` and consent) counts from its first landing.
* Consent is judged **now**, not at the partition date. A run for day D (a nightly or a
  backfill of an old day) markets only to customers who consented at D *and* still consent in
  every version landed by the time the run writes: the versions ingested by any partition
  (``raw.crm__customers``, whatever their landing day) and the customers files that have
  landed in the data folder but were not ingested yet. So an opt-out landed on the 30th keeps
  the customer out of a re-run of the 29th.
* A customer without consent is in no upload file and no activation audience, their scores
  are withheld (NULL) in ``published.scores`` with ``marketing_consent = false`` beside them,
  and their ``activate_*`` flags in ``published.segments`` are false. Segment membership stays
  (counts and measurement need every customer); it is not a marketing surface.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import yaml

from dagster_project import settings
from dagster_project.lib.contract import landing_date

CUSTOMERS_TABLE = "crm__customers"


@cache
def consent_yes() -> tuple[str, ...]:
    """The values that mean yes (lower case), from dbt_project.yml's var ``consent_yes``."""
    project = yaml.safe_load((settings.DBT_DIR / "dbt_project.yml").read_text())
    return tuple(str(v).strip().lower() for v in project["vars"]["consent_yes"])


def _yes_sql(value: str) -> str:
    values = ", ".join("'" + v.replace("'", "''") + "'" for v in consent_yes())
    return f"coalesce(lower(trim({value}::varchar)) in ({values}), false)"


def _unloaded_files(con: duckdb.DuckDBPyConnection, raw_root: Path) -> list[tuple[Path, str]]:
    """Customers files landed in the data folder that no partition has ingested yet."""
    folder = raw_root / "crm" / "customers"
    if not folder.is_dir():
        return []
    loaded = {r[0] for r in con.execute(
        "select file from raw.ingested_files where raw_table = ?", [CUSTOMERS_TABLE]
    ).fetchall()}
    out = []
    for p in sorted(folder.iterdir()):
        day = landing_date(p.name)
        rel = f"crm/customers/{p.name}"
        if day is not None and rel not in loaded:
            out.append((p, day.isoformat()))
    return out


def current_consent(con: duckdb.DuckDBPyConnection, raw_root: Path | None) -> pd.DataFrame:
    """customer_id, consent_now (bool), consent_landed (the landing day of the deciding
    version): every customer's consent in the latest version landed by now (module doc)."""
    parts = [
        f"""select trim(customer_id) as customer_id, {_yes_sql('marketing_consent')} as yes,
                  updated_at::varchar as updated_at, _file_date as landed, _file as file,
                  _line as line
           from raw.{CUSTOMERS_TABLE}"""
    ]
    params: list = []
    for path, day in _unloaded_files(con, raw_root) if raw_root is not None else []:
        # Read by name, every value as text: a consent sweep, not an ingest (the ingest of
        # that day quarantines what is malformed; a line that cannot be read here is skipped).
        parts.append(
            f"""select trim(customer_id), {_yes_sql('marketing_consent')}, updated_at,
                      date '{day}', 'crm/customers/{path.name}', row_number() over () + 1
               from read_csv(?, header = true, all_varchar = true, union_by_name = true,
                             ignore_errors = true, auto_detect = true)
               where customer_id is not null""")
        params.append(str(path))
    sql = f"""
        with versions as ({' union all '.join(parts)}),
        first_landing as (
            select * from versions
            qualify row_number() over (partition by customer_id, updated_at, yes
                                       order by landed, file, line) = 1
        )
        select customer_id, yes as consent_now, landed as consent_landed
        from first_landing
        qualify row_number() over (
            partition by customer_id
            order by landed desc, try_cast(updated_at as timestamptz) desc nulls last,
                     file desc, line desc) = 1
        order by customer_id
    """
    return con.execute(sql, params).df()


def consent_at_run(partition_consent: pd.Series, customer_ids: pd.Series,
                   current: pd.DataFrame) -> pd.Series:
    """Consent for what a run writes now: the partition's consent AND the current one (a
    customer missing from either has none). Aligned to `customer_ids`."""
    now = current.set_index("customer_id")["consent_now"]
    ids = customer_ids.astype(str)
    at_partition = as_bool(partition_consent.to_numpy())
    still = as_bool(ids.map(now).to_numpy())
    return pd.Series(at_partition & still, index=customer_ids.index, dtype=bool)


def as_bool(values) -> np.ndarray:
    """True where a value is a boolean true (numpy and pandas booleans too); False for
    False, NULL, NaN and anything else. Works on empty input."""
    return pd.array(list(values), dtype="boolean").fillna(False).to_numpy(dtype=bool)
