import datetime as dt

import duckdb
import pandas as pd

from dagster_project.lib.warehouse import replace_partition

DAY1, DAY2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


def test_a_partition_rewritten_replaces_its_rows_and_a_new_column_is_added():
    con = duckdb.connect()
    replace_partition(con, "s.t", pd.DataFrame({"as_of_date": [DAY1] * 2, "x": [1, 2]}), DAY1)
    replace_partition(con, "s.t", pd.DataFrame({"as_of_date": [DAY1] * 2, "x": [3, 4]}), DAY1)
    # a later version of the asset writes one more column: earlier partitions read it as NULL
    replace_partition(con, "s.t", pd.DataFrame({"as_of_date": [DAY2], "x": [5], "y": [0.5]}),
                      DAY2)
    rows = con.execute("select as_of_date, x, y from s.t order by x").fetchall()
    assert rows == [(DAY1, 3, None), (DAY1, 4, None), (DAY2, 5, 0.5)]
    assert dict(con.execute("select column_name, data_type from information_schema.columns "
                            "where table_name = 't'").fetchall())["y"] == "DOUBLE"
