-- User-level exposures. Dedupe rule: one row per (exposure_date, customer_id, channel,
-- creative_id), earliest landed copy wins.
select
    exposure_date,
    trim(customer_id) as customer_id,
    lower(trim(channel)) as channel,
    trim(creative_id) as creative_id,
    impressions,
    coalesce(clicks, 0) as clicks,
    _file_date as landed_date
from {{ source('raw', 'ads__exposures') }}
qualify row_number() over (
    partition by exposure_date, customer_id, channel, creative_id order by _file_date, _file, _line
) = 1
