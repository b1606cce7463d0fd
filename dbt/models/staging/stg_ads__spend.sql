-- Daily spend. Dedupe rule: one row per (spend_date, channel, campaign_id, creative_id),
-- earliest landed copy wins.
select
    spend_date,
    lower(trim(channel)) as channel,
    trim(campaign_id) as campaign_id,
    trim(creative_id) as creative_id,
    spend,
    coalesce(impressions, 0) as impressions,
    coalesce(clicks, 0) as clicks,
    _file_date as landed_date
from {{ source('raw', 'ads__spend') }}
qualify row_number() over (
    partition by spend_date, channel, campaign_id, creative_id order by _file_date, _file, _line
) = 1
