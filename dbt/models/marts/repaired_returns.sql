{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='fail'
    )
}}
-- Returns landed by as_of_date whose refund exceeded the returned line's value; the refund was
-- capped at the line value (stated repair rule in int_returns__valued).
select
    {{ as_of_date() }} as as_of_date,
    return_id,
    order_id,
    sku,
    refund_amount_reported,
    line_value as refund_amount_capped_to,
    'refund larger than the returned line value: capped' as reason
from {{ ref('int_returns__valued') }}
where landed_date <= {{ as_of_date() }} and refund_was_capped
