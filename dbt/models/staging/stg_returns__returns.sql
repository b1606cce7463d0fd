-- Returns in UTC. Dedupe rule: one row per return_id, earliest landed copy wins.
select
    trim(return_id) as return_id,
    trim(order_id) as order_id,
    trim(sku) as sku,
    returned_at,
    (returned_at at time zone 'UTC')::date as return_date,
    quantity,
    refund_amount,
    lower(nullif(trim(reason), '')) as reason,
    coalesce(return_shipping_cost, 0) as return_shipping_cost,
    _file_date as landed_date
from {{ source('raw', 'returns__returns') }}
qualify row_number() over (partition by return_id order by _file_date, _file, _line) = 1
