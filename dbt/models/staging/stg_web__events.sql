-- Web events in UTC. Dedupe rule: one row per event_id, earliest landed copy wins.
with source as (
    select * from {{ source('raw', 'web__events') }}
)

select
    trim(event_id) as event_id,
    trim(anonymous_id) as anonymous_id,
    nullif(trim(customer_id), '') as customer_id,
    trim(session_id) as session_id,
    event_at,
    (event_at at time zone 'UTC')::date as event_date,
    lower(trim(event_type)) as event_type,
    lower(nullif(trim(page_type), '')) as page_type,
    lower(nullif(trim(utm_source), '')) as utm_source,
    lower(nullif(trim(utm_medium), '')) as utm_medium,
    nullif(trim(utm_campaign), '') as utm_campaign,
    lower(nullif(trim(device), '')) as device,
    _file_date as landed_date
from source
qualify row_number() over (partition by event_id order by _file_date, _file, _line) = 1
