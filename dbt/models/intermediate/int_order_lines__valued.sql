-- Order lines valued in the reporting currency (the order's FX rate), with their own landing
-- date. Marts aggregate them per cutoff from the lines landed by that cutoff.
select
    l.order_id,
    l.line_number,
    l.sku,
    l.category,
    l.quantity,
    l.landed_date,
    (l.quantity * l.unit_price * o.fx_rate)::decimal(18, 4) as line_value_rc,
    (l.quantity * l.unit_cost * o.fx_rate)::decimal(18, 4) as cogs_rc
from {{ ref('stg_crm__order_lines') }} as l
inner join {{ ref('stg_crm__orders') }} as o on o.order_id = l.order_id
where not o.fx_missing and not o.is_credit_note and l.quantity > 0
