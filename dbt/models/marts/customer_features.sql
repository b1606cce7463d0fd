{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='fail',
        post_hook="{{ build_missing_feature_dates() }}"
    )
}}
-- One row per (as_of_date, customer_id): point-in-time features for the partition date and its
-- training cutoffs (only the dates not built yet). A row at date c reads only rows that had landed by c (visible_from /
-- landed_date <= c) and whose event day is <= c. Windows are half-open in time: "last 7 days"
-- at c means event days c-6 .. c. The query is macros/customer_features.sql. This statement
-- builds the latest missing date; the post-hook builds the other missing dates one statement
-- each, so a cold start (19 dates) needs the memory of one date, not of all 19 at once.
{{ customer_features_select(missing_feature_dates(limit=1)) }}
