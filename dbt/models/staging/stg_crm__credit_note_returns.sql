-- Credit notes as returns. Shops whose ERP or till exports a cancellation or a return as an
-- invoice of its own with negative quantities (a credit note, e.g. "C" invoices), not as a
-- returns file, still have returns. Rule: a credit note is an order with a negative gross
-- amount (is_credit_note); each of its lines with a negative quantity is a returned line: its
-- units (-quantity) and value (-quantity x unit_price, in the order's currency) are a return of
-- the same customer's latest earlier purchase of that SKU (ordered no later than the credit
-- note and landed no later than it); without one, of the customer's latest earlier purchase of
-- any SKU. A credit note is not a purchase: int_orders__economics leaves it out. A negative
-- line without any earlier purchase of its customer is listed in marts.orphan_orders with the
-- reason (matched = false here). A negative line on a purchase (gross_amount >= 0) is a
-- defect, not a return: left out of the line economics and listed in marts.orphan_orders.
with orders as (
    select * from {{ ref('stg_crm__orders') }}
),

lines as (
    select * from {{ ref('stg_crm__order_lines') }}
),

credit_lines as (
    select
        l.order_id as credit_order_id,
        l.line_number,
        l.sku,
        -l.quantity as quantity,
        -l.quantity * l.unit_price as refund_amount,
        o.customer_id,
        o.ordered_at,
        o.landed_date,
        o._file,
        o._line
    from lines as l
    inner join orders as o on o.order_id = l.order_id
    where l.quantity < 0 and o.is_credit_note
),

purchases as (
    select distinct o.order_id, o.customer_id, o.ordered_at, o.landed_date, l.sku
    from orders as o
    inner join lines as l on l.order_id = o.order_id
    where not o.is_credit_note and l.quantity > 0
),

matched as (
    select
        c.*,
        p.order_id as original_order_id
    from credit_lines as c
    left join purchases as p
        on
            p.customer_id = c.customer_id
            and p.ordered_at <= c.ordered_at
            and p.landed_date <= c.landed_date
            and p.order_id <> c.credit_order_id
    qualify row_number() over (
        partition by c.credit_order_id, c.line_number
        order by (p.sku = c.sku) desc nulls last, p.ordered_at desc nulls last, p.order_id desc
    ) = 1
)

select
    'credit:' || credit_order_id || ':' || line_number as return_id,
    line_number,
    original_order_id as order_id,
    sku,
    ordered_at as returned_at,
    (ordered_at at time zone 'UTC')::date as return_date,
    quantity,
    refund_amount,
    'cancellation' as reason,
    0.0 as return_shipping_cost,
    landed_date,
    credit_order_id,
    customer_id,
    original_order_id is not null as matched,
    _file,
    _line
from matched
