"""The reporting currency: what every amount the pipeline shows is converted to.

Rule (one place): ``DS_REPORTING_CURRENCY`` when set; else, when every order landed by the
partition date is in one currency, that currency (a GBP-only or USD-only shop needs no
``fx/rates`` file, and its figures are in its own money); else EUR, and orders in the other
currencies are converted with ``fx/rates`` (an order without a rate within 7 days is kept out
of the features and listed in ``marts.orphan_orders`` with the reason). Decided per partition
from the files landed by that day, so a backfill decides as the nightly run did.
"""

from __future__ import annotations

import datetime as dt
import os

import duckdb

DEFAULT = "EUR"


def reporting_currency(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> tuple[str, str]:
    """(ISO 4217 code, why that one) for the partition ``as_of``."""
    configured = os.environ.get("DS_REPORTING_CURRENCY", "").strip().upper()
    if configured:
        return configured, "configured (DS_REPORTING_CURRENCY)"
    try:
        rows = con.execute(
            "select upper(trim(currency)) c, count(*) n from raw.crm__orders "
            "where _file_date <= ? and nullif(trim(currency), '') is not null "
            "group by 1 order by n desc, c", [as_of]).fetchall()
    except duckdb.CatalogException:  # nothing ingested yet
        rows = []
    if len(rows) == 1:
        return rows[0][0], f"the only currency of the orders landed by {as_of}"
    if not rows:
        return DEFAULT, f"no orders landed by {as_of}: the default"
    listed = ", ".join(f"{c} ({n:,} orders)" for c, n in rows[:5])
    return DEFAULT, (f"orders come in {len(rows)} currencies ({listed}): the default, the others "
                     "converted with fx/rates; set DS_REPORTING_CURRENCY to choose another")
