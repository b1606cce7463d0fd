-- FX rates. Dedupe rule: one row per (rate_date, currency) and landing date; if a corrected
-- rate lands later, both are kept and consumers choose by landing date (point-in-time).
select
    rate_date,
    upper(trim(currency)) as currency,
    rate_to_reporting,
    _file_date as landed_date
from {{ source('raw', 'fx__rates') }}
qualify row_number() over (
    partition by rate_date, currency, _file_date order by _file, _line
) = 1
