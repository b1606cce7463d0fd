"""Decision Segments: a nightly customer segmentation pipeline (Dagster + dbt + DuckDB)."""
