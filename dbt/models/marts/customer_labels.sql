{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='fail'
    )
}}
-- One row per (as_of_date, cutoff_date, customer_id) for the training cutoffs of the partition
-- (k >= 1). Each label looks only at order days strictly after the cutoff: (cutoff, cutoff + h].
-- A label is NULL when its window does not end on or before as_of_date (not yet observable) or
-- the customer is outside the target's population (see lib/features.py LABELS).
-- Outcomes use every row landed by as_of_date: that is what is known when the model trains.
with cutoffs as (
    {{ feature_dates(min_k=1) }}
),

base as (
    select
        f.as_of_date as cutoff_date,
        f.customer_id,
        f.orders_lifetime,
        f.orders_365d
    from {{ ref('customer_features') }} as f
    where f.as_of_date in (select cutoff_date from cutoffs)
),

orders_known as (
    select *
    from {{ ref('int_orders__economics') }}
    where visible_from <= {{ as_of_date() }} and order_date <= {{ as_of_date() }} and not fx_missing
),

lines_known as (
    select order_id, category, landed_date
    from {{ ref('int_order_lines__valued') }}
    where landed_date <= {{ as_of_date() }}
),

prior_categories as (
    -- categories bought by the cutoff, from the lines visible at the cutoff
    select c.cutoff_date, o.customer_id, list(distinct l.category) as cats
    from cutoffs as c
    inner join orders_known as o
        on o.visible_from <= c.cutoff_date and o.order_date <= c.cutoff_date
    inner join lines_known as l on l.order_id = o.order_id and l.landed_date <= c.cutoff_date
    group by all
),

order_categories as (
    select order_id, list(distinct category) as categories from lines_known group by all
),

returned_orders as (
    select distinct r.order_id, r.return_date
    from {{ ref('int_returns__valued') }} as r
    where r.visible_from <= {{ as_of_date() }} and r.return_date <= {{ as_of_date() }}
),

future as (
    select
        b.cutoff_date,
        b.customer_id,
        o.order_id,
        o.ordered_at,
        o.order_date - b.cutoff_date as days_after,
        o.is_discounted,
        not list_has_all(coalesce(p.cats, []), coalesce(oc.categories, [])) as has_new_category,
        exists (
            select 1 from returned_orders as ro
            where ro.order_id = o.order_id and ro.return_date <= b.cutoff_date + 60
        ) as returned_in_60d
    from base as b
    inner join orders_known as o
        on o.customer_id = b.customer_id
        and o.order_date > b.cutoff_date
        and o.order_date <= b.cutoff_date + 90
    left join prior_categories as p
        on p.cutoff_date = b.cutoff_date and p.customer_id = b.customer_id
    left join order_categories as oc on oc.order_id = o.order_id
),

outcomes as (
    select
        cutoff_date,
        customer_id,
        bool_or(days_after <= 7) as any_7,
        bool_or(days_after <= 30) as any_30,
        bool_or(days_after <= 60) as any_60,
        bool_or(days_after <= 90) as any_90,
        bool_or(days_after <= 60 and has_new_category) as new_category_60,
        bool_or(days_after <= 60 and returned_in_60d) as returned_60,
        arg_min(is_discounted, (ordered_at, order_id)) as first_after_discounted
    from future
    group by all
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        b.cutoff_date,
        b.customer_id,
        case when b.cutoff_date + 7 <= {{ as_of_date() }}
            then coalesce(o.any_7, false)::int::double end as purchase_7d,
        case when b.cutoff_date + 30 <= {{ as_of_date() }}
            then coalesce(o.any_30, false)::int::double end as purchase_30d,
        case when b.cutoff_date + 90 <= {{ as_of_date() }} and b.orders_lifetime = 1
            then coalesce(o.any_90, false)::int::double end as repeat_90d,
        case when b.cutoff_date + 60 <= {{ as_of_date() }} and b.orders_lifetime >= 1
            then coalesce(o.new_category_60, false)::int::double end as cross_sell_60d,
        case when b.cutoff_date + 90 <= {{ as_of_date() }} and b.orders_365d >= 1
            then (not coalesce(o.any_90, false))::int::double end as churn_90d,
        case when b.cutoff_date + 90 <= {{ as_of_date() }} and coalesce(o.any_90, false)
            then o.first_after_discounted::int::double end as discount_next_order,
        case when b.cutoff_date + 60 <= {{ as_of_date() }} and b.orders_lifetime >= 1
            then coalesce(o.returned_60, false)::int::double end as return_60d
    from base as b
    left join outcomes as o using (cutoff_date, customer_id)
)

select * from final
