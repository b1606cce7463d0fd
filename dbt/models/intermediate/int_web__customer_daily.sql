-- Web behaviour per (customer, event day, visible-from date), after identity stitching.
-- visible_from = the day this row became knowable: its landing date, or for a stitched
-- anonymous event the later of that and the day the device was linked to the customer.
-- sessions counts distinct sessions per row, so the features' window sums (sessions_7d ...)
-- count a session once per (event day, visible_from) row it has events in: a session across
-- midnight, or whose events became visible on two days (a late file, a device linked later),
-- counts twice. Exact distinct counts per window would need the event table at every feature
-- date. On the default data (2026-11-25) sessions_90d sums to 4,475 more than the distinct
-- sessions with a visible event in the window (3,534 of the 12,922 customers with any).
with events as (
    select
        e.*,
        coalesce(e.customer_id, m.customer_id) as resolved_customer_id,
        case
            when e.customer_id is not null then e.landed_date
            else greatest(e.landed_date, m.linked_landed_date)
        end as visible_from
    from {{ ref('stg_web__events') }} as e
    -- equi-join only (a non-equality term in ON turns DuckDB's hash join into a nested loop);
    -- the map is used only for events without a logged-in customer, via coalesce above
    left join {{ ref('int_identity__anonymous_map') }} as m
        on m.anonymous_id = e.anonymous_id
)

select
    resolved_customer_id as customer_id,
    event_date,
    visible_from,
    count(distinct session_id) as sessions,
    count(*) filter (where event_type = 'page_view') as page_views,
    count(*) filter (where page_type = 'product') as product_views,
    count(*) filter (where event_type = 'add_to_cart') as add_to_cart,
    count(*) filter (where event_type = 'checkout_start') as checkout_starts,
    count(*) filter (where event_type = 'purchase') as web_purchases,
    count(*) filter (where page_type = 'reviews') as reviews_views,
    count(*) filter (where page_type = 'guarantee') as guarantee_views,
    count(*) filter (where page_type = 'shipping_returns') as shipping_returns_views,
    count(*) filter (where page_type = 'comparison') as comparison_views,
    count(*) filter (where page_type = 'about') as about_views,
    count(*) filter (where page_type = 'sale') as sale_views,
    count(*) filter (
        where page_type in ('reviews', 'guarantee', 'shipping_returns', 'comparison')
    ) as trust_views,
    count(*) filter (where utm_medium in ('cpc', 'paid_social', 'display', 'paid_search', 'ppc'))
        as paid_events
from events
where resolved_customer_id is not null
group by all
