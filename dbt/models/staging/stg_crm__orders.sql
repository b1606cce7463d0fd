-- Orders in UTC with amounts in the reporting currency.
-- Dedupe rule: one row per order_id, the earliest landed copy wins (re-sent rows are dropped here,
-- counted in the ingest report). FX rule: the rate of the latest rate_date within the 7 days up to
-- the order date, among rates landed no later than the order itself (so a rate that lands late
-- cannot change a past feature); fx_missing flags orders with no such rate. Credit-note rule: an
-- order with a negative gross amount is a credit note (is_credit_note), not a purchase.
with source as (
    select * from {{ source('raw', 'crm__orders') }}
),

deduped as (
    select *
    from source
    qualify row_number() over (partition by order_id order by _file_date, _file, _line) = 1
),

rates as (
    select * from {{ ref('stg_fx__rates') }}
),

with_rate as (
    select
        o.order_id,
        r.rate_to_reporting
    from deduped as o
    inner join rates as r
        on
            r.currency = upper(trim(o.currency))
            and r.rate_date <= (o.ordered_at at time zone 'UTC')::date
            and r.rate_date > (o.ordered_at at time zone 'UTC')::date - 7
            and r.landed_date <= o._file_date
    qualify row_number() over (partition by o.order_id order by r.rate_date desc, r.landed_date) = 1
),

final as (
    select
        trim(o.order_id) as order_id,
        trim(o.customer_id) as customer_id,
        o.ordered_at,
        (o.ordered_at at time zone 'UTC')::date as order_date,
        upper(trim(o.currency)) as currency,
        case
            when upper(trim(o.currency)) = '{{ var("reporting_currency") }}' then 1.0
            else w.rate_to_reporting
        end as fx_rate,
        o.gross_amount,
        coalesce(o.discount_amount, 0) as discount_amount,
        nullif(trim(o.coupon_code), '') as coupon_code,
        coalesce(o.shipping_fee, 0) as shipping_fee,
        coalesce(o.shipping_cost, 0) as shipping_cost,
        lower(nullif(trim(o.sales_channel), '')) as sales_channel,
        lower(nullif(trim(o.utm_medium), '')) as utm_medium,
        coalesce(o.discount_amount, 0) > 0 or nullif(trim(o.coupon_code), '') is not null
            as is_discounted,
        -- a credit note (cancellation / return exported as an invoice): not a purchase; its
        -- negative lines are returns (stg_crm__credit_note_returns)
        o.gross_amount < 0 as is_credit_note,
        coalesce(lower(trim(o.utm_medium)) in ('cpc', 'paid_social', 'display', 'paid_search', 'ppc'), false)
            as is_paid_touch,
        o._file_date as landed_date,
        o._file,
        o._line
    from deduped as o
    left join with_rate as w on w.order_id = o.order_id
)

select
    *,
    fx_rate is null as fx_missing
from final
