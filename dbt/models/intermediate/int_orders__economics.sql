-- One row per order with its economics in the reporting currency, before returns:
-- net revenue = gross - discount; contribution before returns = net revenue + shipping fee
-- - cost of goods - shipping cost. Returns, refunds and support arrive later in time and are
-- added per cutoff in the marts (they are events of their own, point-in-time).
with orders as (
    select * from {{ ref('stg_crm__orders') }}
),

lines as (
    select
        order_id,
        sum(quantity) as units,
        sum(quantity * unit_price) as line_value,
        sum(quantity * unit_cost) as cogs,
        count(*) as n_lines,
        list(distinct category order by category) as categories,
        arg_max(category, (quantity * unit_price, category)) as main_category,
        max(landed_date) as lines_landed_date
    from {{ ref('stg_crm__order_lines') }}
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.ordered_at,
    o.order_date,
    o.landed_date,
    -- an order is visible once both the order row and all of its lines have landed
    greatest(o.landed_date, coalesce(l.lines_landed_date, o.landed_date)) as visible_from,
    o.is_discounted,
    o.is_paid_touch,
    o.utm_medium,
    o.sales_channel,
    o.fx_missing,
    o.fx_rate,
    coalesce(l.units, 0) as units,
    coalesce(l.n_lines, 0) as n_lines,
    coalesce(l.categories, []) as categories,
    l.main_category,
    -- Money as DECIMAL: sums of decimals are exact, so features do not depend on the order in
    -- which DuckDB's parallel aggregation adds them (floating-point sums do).
    (o.gross_amount * o.fx_rate)::decimal(18, 4) as gross_rc,
    (o.discount_amount * o.fx_rate)::decimal(18, 4) as discount_rc,
    ((o.gross_amount - o.discount_amount) * o.fx_rate)::decimal(18, 4) as net_revenue_rc,
    (o.shipping_fee * o.fx_rate)::decimal(18, 4) as shipping_fee_rc,
    (o.shipping_cost * o.fx_rate)::decimal(18, 4) as shipping_cost_rc,
    (coalesce(l.cogs, 0) * o.fx_rate)::decimal(18, 4) as cogs_rc,
    (
        (o.gross_amount - o.discount_amount + o.shipping_fee - o.shipping_cost - coalesce(l.cogs, 0))
        * o.fx_rate
    )::decimal(18, 4) as contribution_before_returns_rc
from orders as o
left join lines as l on l.order_id = o.order_id
