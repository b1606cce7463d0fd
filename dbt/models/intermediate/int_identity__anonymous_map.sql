-- Identity stitching: each anonymous (device) id is linked to the customer who logged in on it
-- most often (ties: earliest login, then lowest id). linked_landed_date is the landing date of
-- the first login event for that pair, so a cutoff before it cannot see the link (no leakage).
with logins as (
    select
        anonymous_id,
        customer_id,
        count(*) as n_events,
        min(event_at) as first_login_at,
        min(landed_date) as linked_landed_date
    from {{ ref('stg_web__events') }}
    where customer_id is not null
    group by anonymous_id, customer_id
)

select
    anonymous_id,
    customer_id,
    n_events,
    first_login_at,
    linked_landed_date
from logins
qualify row_number() over (
    partition by anonymous_id order by n_events desc, first_login_at, customer_id
) = 1
