-- Creative catalogue. Dedupe rule: one row per creative_id, earliest landed copy wins.
select
    trim(creative_id) as creative_id,
    lower(trim(channel)) as channel,
    lower(nullif(trim(format), '')) as format,
    lower(trim(persuasion_theme)) as persuasion_theme,
    _file_date as landed_date
from {{ source('raw', 'ads__creatives') }}
qualify row_number() over (partition by creative_id order by _file_date, _file, _line) = 1
