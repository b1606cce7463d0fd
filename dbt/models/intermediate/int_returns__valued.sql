-- Returns valued in the reporting currency. Repair rule: a refund larger than the value of the
-- returned SKU's line(s) in that order is capped at that value (refund_was_capped = true); the
-- line value is taken from the lines that had landed when the return landed, so a later file
-- cannot change it. Cost recovered: returned goods are restocked at
-- var('returned_goods_recovery_rate') of unit cost.
with returns as (
    select
        return_id, order_id, sku, returned_at, return_date, quantity, refund_amount, reason,
        return_shipping_cost, landed_date
    from {{ ref('stg_returns__returns') }}
    union all
    -- credit notes' negative lines, matched to the purchase they return
    select
        return_id, order_id, sku, returned_at, return_date, quantity, refund_amount, reason,
        return_shipping_cost, landed_date
    from {{ ref('stg_crm__credit_note_returns') }}
    where matched
),

line_values as (
    select
        r.return_id,
        sum(l.quantity * l.unit_price) as line_value,
        sum(l.quantity) as line_units,
        sum(l.quantity * l.unit_cost) / nullif(sum(l.quantity), 0) as unit_cost
    from returns as r
    inner join {{ ref('stg_crm__order_lines') }} as l
        on
            l.order_id = r.order_id and l.sku = r.sku and l.landed_date <= r.landed_date
            and l.quantity > 0
    group by r.return_id
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
left join line_values as lv on lv.return_id = r.return_id
left join orders as o on o.order_id = r.order_id
