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
-- "Latest" is the latest landed: a later file's version wins whatever its updated_at says
-- (a withdrawal re-sent with an unchanged or older updated_at still withdraws); within one
-- file, the latest updated_at, then the last line.
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
    partition by customer_id
    order by landed_date desc, updated_at desc, _file desc, _line desc
) = 1
