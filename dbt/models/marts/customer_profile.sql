{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='fail'
    )
}}
-- One row per (as_of_date, customer_id): the latest customer record version landed by
-- as_of_date (contact data and marketing consent as known that night). Used for activation.
select
    {{ as_of_date() }} as as_of_date,
    customer_id,
    email_normalized,
    phone,
    first_name,
    last_name,
    country,
    zip,
    created_at,
    updated_at,
    marketing_consent
from {{ ref('stg_crm__customers') }}
where landed_date <= {{ as_of_date() }} and updated_at < {{ as_of_end() }}
qualify row_number() over (
    partition by customer_id order by updated_at desc, landed_date desc, _file desc, _line desc
) = 1
