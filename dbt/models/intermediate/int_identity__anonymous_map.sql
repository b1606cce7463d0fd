-- Identity stitching: each anonymous (device) id is linked to the customer of its FIRST login
-- (earliest landed login event; ties: earliest event time, then lowest customer id), from the
-- landing date of that login on. First login wins for good: data landing later can add logins
-- but never moves an existing link, so a cutoff sees the same link whenever it is computed.
with logins as (
    select
        anonymous_id,
        customer_id,
        landed_date,
        event_at
    from {{ ref('stg_web__events') }}
    where customer_id is not null
)

select
    anonymous_id,
    customer_id,
    landed_date as linked_landed_date,
    event_at as first_login_at
from logins
qualify row_number() over (
    partition by anonymous_id order by landed_date, event_at, customer_id
) = 1
