-- Returns valued in the reporting currency. Repair rule: a refund larger than the value of the
-- returned SKU's line(s) in that order is capped at that value (refund_was_capped = true).
-- Cost recovered: returned goods are restocked at var('returned_goods_recovery_rate') of unit cost.
with returns as (
    select * from {{ ref('stg_returns__returns') }}
),

line_values as (
    select
        order_id,
        sku,
        sum(quantity * unit_price) as line_value,
        sum(quantity) as line_units,
        sum(quantity * unit_cost) / nullif(sum(quantity), 0) as unit_cost
    from {{ ref('stg_crm__order_lines') }}
    group by order_id, sku
),

orders as (
    select order_id, customer_id, fx_rate, visible_from from {{ ref('int_orders__economics') }}
)

select
    r.return_id,
    r.order_id,
    o.customer_id,
    r.sku,
    r.returned_at,
    r.return_date,
    r.landed_date,
    -- a return is visible once it and its order have landed: before that, whose return it is
    -- is unknown (the order may arrive late)
    greatest(r.landed_date, coalesce(o.visible_from, r.landed_date)) as visible_from,
    r.quantity,
    r.reason,
    r.refund_amount as refund_amount_reported,
    lv.line_value,
    lv.line_value is not null and r.refund_amount > lv.line_value as refund_was_capped,
    (least(r.refund_amount, coalesce(lv.line_value, r.refund_amount)) * o.fx_rate)::decimal(18, 4)
        as refund_rc,
    (r.return_shipping_cost * o.fx_rate)::decimal(18, 4) as return_shipping_cost_rc,
    (
        coalesce(lv.unit_cost, 0) * least(r.quantity, coalesce(lv.line_units, r.quantity))
        * {{ var('returned_goods_recovery_rate') }} * o.fx_rate
    )::decimal(18, 4) as cost_recovered_rc
from returns as r
left join line_values as lv on lv.order_id = r.order_id and lv.sku = r.sku
left join orders as o on o.order_id = r.order_id
