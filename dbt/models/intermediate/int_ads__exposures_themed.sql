-- User-level exposures with the creative's persuasion theme.
select
    x.customer_id,
    x.exposure_date,
    x.landed_date,
    x.channel,
    x.creative_id,
    coalesce(c.persuasion_theme, 'unknown') as persuasion_theme,
    x.impressions,
    x.clicks
from {{ ref('stg_ads__exposures') }} as x
left join {{ ref('stg_ads__creatives') }} as c on c.creative_id = x.creative_id
