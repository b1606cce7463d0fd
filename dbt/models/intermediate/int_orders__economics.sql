-- One row per order (the order header) with its amounts in the reporting currency.
-- Everything here is known when the header lands: an order is visible from its landing date
-- (visible_from). Line-level economics (units, cost of goods, categories) come from
-- int_order_lines__valued and are aggregated per cutoff in the marts from the lines landed by
-- then, so a line that arrives late cannot change what an earlier date saw.
with orders as (
    select * from {{ ref('stg_crm__orders') }}
)

select
    o.order_id,
    o.customer_id,
    o.ordered_at,
    o.order_date,
    o.landed_date,
    o.landed_date as visible_from,
    o.is_discounted,
    o.is_paid_touch,
    o.utm_medium,
    o.sales_channel,
    o.fx_missing,
    o.fx_rate,
    -- Money as DECIMAL: sums of decimals are exact, so features do not depend on the order in
    -- which DuckDB's parallel aggregation adds them (floating-point sums do).
    (o.gross_amount * o.fx_rate)::decimal(18, 4) as gross_rc,
    (o.discount_amount * o.fx_rate)::decimal(18, 4) as discount_rc,
    ((o.gross_amount - o.discount_amount) * o.fx_rate)::decimal(18, 4) as net_revenue_rc,
    (o.shipping_fee * o.fx_rate)::decimal(18, 4) as shipping_fee_rc,
    (o.shipping_cost * o.fx_rate)::decimal(18, 4) as shipping_cost_rc
from orders as o
-- a credit note is not a purchase: its negative lines are returns (stg_crm__credit_note_returns)
where not o.is_credit_note
