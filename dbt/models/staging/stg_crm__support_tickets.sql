-- Support tickets. Dedupe rule: one row per ticket_id, earliest landed copy wins.
with source as (
    select * from {{ source('raw', 'crm__support_tickets') }}
)

select
    trim(ticket_id) as ticket_id,
    trim(customer_id) as customer_id,
    created_at,
    (created_at at time zone 'UTC')::date as ticket_date,
    lower(nullif(trim(topic), '')) as topic,
    -- DECIMAL: exact sums, independent of the order parallel aggregation adds them in
    coalesce(handle_minutes, 0)::decimal(18, 4) as handle_minutes,
    _file_date as landed_date
from source
qualify row_number() over (partition by ticket_id order by _file_date, _file, _line) = 1
