{#- The customer_features query for the feature dates in `cutoffs_sql` (a select of
    cutoff_date, cutoff_index). Point-in-time: a row at date c reads only rows that had landed
    by c (visible_from / landed_date <= c) and whose event day is <= c. Windows are half-open
    in time: "last 7 days" at c means event days c-6 .. c. The model builds one date with it
    and its post-hook the other missing dates, one statement each (build_missing_feature_dates). -#}
{% macro customer_features_select(cutoffs_sql) -%}
with cutoffs as (
    {{ cutoffs_sql }}
),

customers_at as (
    select
        c.cutoff_date,
        cu.customer_id,
        min(cu.created_at) as created_at
    from cutoffs as c
    inner join {{ ref('stg_crm__customers') }} as cu
        on cu.landed_date <= c.cutoff_date
        and (cu.updated_at at time zone 'UTC')::date <= c.cutoff_date
    group by all
),

orders_at as (
    select
        c.cutoff_date,
        o.*,
        c.cutoff_date - o.order_date as age_days
    from cutoffs as c
    inner join {{ ref('int_orders__economics') }} as o
        on o.visible_from <= c.cutoff_date and o.order_date <= c.cutoff_date
    where not o.fx_missing
),

lines_at as (
    -- the lines of visible orders that had landed by the cutoff (a late line counts from
    -- the day it lands, never before)
    select o.cutoff_date, o.customer_id, o.order_id, o.age_days, l.category, l.quantity,
           l.line_value_rc, l.cogs_rc
    from orders_at as o
    inner join {{ ref('int_order_lines__valued') }} as l
        on l.order_id = o.order_id and l.landed_date <= o.cutoff_date
),

order_lines_at as (
    select
        cutoff_date,
        order_id,
        sum(quantity) as units,
        sum(cogs_rc) as cogs_rc,
        arg_max(category, (line_value_rc, category)) as main_category
    from lines_at
    group by all
),

order_seq as (
    select
        cutoff_date,
        customer_id,
        order_date,
        order_date - lag(order_date) over (
            partition by cutoff_date, customer_id order by order_date, order_id
        ) as gap_days,
        row_number() over (
            partition by cutoff_date, customer_id order by order_date, order_id
        ) as order_rank
    from orders_at
),

interval_stats as (
    select
        cutoff_date,
        customer_id,
        -- from exact integer sums (stddev_samp's streaming merge is order-dependent)
        sum(gap_days) / count(gap_days) as mean_interorder_days,
        sqrt(
            (sum(gap_days * gap_days) - sum(gap_days) * sum(gap_days) / count(gap_days))
            / nullif(count(gap_days) - 1, 0)
        ) as std_interorder_days,
        max(order_date) filter (where order_rank = 2) - min(order_date) as first_to_second
    from order_seq
    group by all
),

order_stats as (
    select
        cutoff_date,
        customer_id,
        count(*) filter (where age_days < 7) as orders_7d,
        count(*) filter (where age_days < 30) as orders_30d,
        count(*) filter (where age_days < 90) as orders_90d,
        count(*) filter (where age_days < 180) as orders_180d,
        count(*) filter (where age_days < 365) as orders_365d,
        count(*) as orders_lifetime,
        coalesce(sum(net_revenue_rc) filter (where age_days < 30), 0) as revenue_30d,
        coalesce(sum(net_revenue_rc) filter (where age_days < 90), 0) as revenue_90d,
        coalesce(sum(net_revenue_rc) filter (where age_days < 180), 0) as revenue_180d,
        coalesce(sum(net_revenue_rc) filter (where age_days < 365), 0) as revenue_365d,
        sum(net_revenue_rc) as revenue_lifetime,
        sum(net_revenue_rc) / count(*) as aov_lifetime,
        arg_max(net_revenue_rc, (ordered_at, order_id)) as last_order_value,
        min(age_days) as days_since_last_order,
        max(age_days) as days_since_first_order,
        max(age_days) - min(age_days) as recency_span_days,
        sum(is_discounted::int) / count(*) as discount_order_share,
        sum(discount_rc) / nullif(sum(gross_rc), 0) as discount_rate,
        count(*) filter (where is_discounted and age_days < 365) as coupon_orders_365d,
        sum((not is_paid_touch)::int) / count(*) as unpaid_order_share,
        count(*) filter (where is_paid_touch and age_days < 365) as paid_orders_365d,
        coalesce(sum(ol.units) filter (where age_days < 365), 0) as units_365d,
        coalesce(sum(gross_rc) filter (where age_days < 365), 0) as gross_365d,
        coalesce(sum(
            net_revenue_rc + shipping_fee_rc - shipping_cost_rc - coalesce(ol.cogs_rc, 0)
        ) filter (where age_days < 365), 0) as contribution_before_returns_365d,
        min(order_date) as first_order_date
    from orders_at
    left join order_lines_at as ol using (cutoff_date, order_id)
    group by all
),

category_spend as (
    select o.cutoff_date, o.customer_id, ol.main_category, sum(o.net_revenue_rc) as spend
    from orders_at as o
    inner join order_lines_at as ol using (cutoff_date, order_id)
    group by all
),

category_stats as (
    select
        cs.cutoff_date,
        cs.customer_id,
        arg_max(cs.main_category, (cs.spend, cs.main_category)) as top_category,
        max(cs.spend) / nullif(sum(cs.spend), 0) as top_category_share,
        any_value(b.category_count) as category_count
    from category_spend as cs
    inner join (
        select cutoff_date, customer_id, count(distinct category) as category_count
        from lines_at
        group by all
    ) as b using (cutoff_date, customer_id)
    group by all
),

return_stats as (
    select
        c.cutoff_date,
        r.customer_id,
        count(*) as returns_365d,
        sum(r.quantity) as returned_units_365d,
        sum(r.refund_rc) as refunds_365d,
        sum(r.return_shipping_cost_rc) as return_shipping_365d,
        sum(r.cost_recovered_rc) as cost_recovered_365d
    from cutoffs as c
    inner join {{ ref('int_returns__valued') }} as r
        on r.visible_from <= c.cutoff_date
        and r.return_date <= c.cutoff_date
        and r.return_date > c.cutoff_date - 365
    where r.customer_id is not null and r.refund_rc is not null
    group by all
),

support_stats as (
    select
        c.cutoff_date,
        t.customer_id,
        count(*) filter (where t.ticket_date > c.cutoff_date - 90) as support_tickets_90d,
        sum(t.handle_minutes) as support_minutes_365d
    from cutoffs as c
    inner join {{ ref('stg_crm__support_tickets') }} as t
        on t.landed_date <= c.cutoff_date
        and t.ticket_date <= c.cutoff_date
        and t.ticket_date > c.cutoff_date - 365
    group by all
),

web_at as (
    select
        c.cutoff_date,
        w.*,
        c.cutoff_date - w.event_date as age_days
    from cutoffs as c
    inner join {{ ref('int_web__customer_daily') }} as w
        on w.visible_from <= c.cutoff_date and w.event_date <= c.cutoff_date
),

web_stats as (
    select
        cutoff_date,
        customer_id,
        coalesce(sum(sessions) filter (where age_days < 7), 0) as sessions_7d,
        coalesce(sum(sessions) filter (where age_days < 30), 0) as sessions_30d,
        coalesce(sum(sessions) filter (where age_days < 90), 0) as sessions_90d,
        min(age_days) as days_since_last_visit,
        max(event_date) filter (where true) as last_visit_date,
        min(event_date) as first_visit_date,
        coalesce(sum(product_views) filter (where age_days < 7), 0) as product_views_7d,
        coalesce(sum(product_views) filter (where age_days < 30), 0) as product_views_30d,
        coalesce(sum(add_to_cart) filter (where age_days < 7), 0) as add_to_cart_7d,
        coalesce(sum(add_to_cart) filter (where age_days < 30), 0) as add_to_cart_30d,
        coalesce(sum(checkout_starts) filter (where age_days < 30), 0) as checkout_starts_30d,
        coalesce(sum(web_purchases) filter (where age_days < 30), 0) as web_purchases_30d,
        coalesce(sum(reviews_views) filter (where age_days < 30), 0) as reviews_views_30d,
        coalesce(sum(guarantee_views) filter (where age_days < 30), 0) as guarantee_views_30d,
        coalesce(sum(shipping_returns_views) filter (where age_days < 30), 0)
            as shipping_returns_views_30d,
        coalesce(sum(comparison_views) filter (where age_days < 30), 0) as comparison_views_30d,
        coalesce(sum(about_views) filter (where age_days < 90), 0) as about_views_90d,
        coalesce(sum(sale_views) filter (where age_days < 90), 0) as sale_views_90d,
        coalesce(sum(trust_views) filter (where age_days < 90), 0) as trust_views_90d,
        coalesce(sum(page_views) filter (where age_days < 90), 0) as page_views_90d,
        coalesce(sum(reviews_views) filter (where age_days < 365), 0) as reviews_views_365d,
        coalesce(sum(about_views) filter (where age_days < 365), 0) as about_views_365d,
        coalesce(sum(guarantee_views) filter (where age_days < 365), 0) as guarantee_views_365d,
        coalesce(sum(shipping_returns_views) filter (where age_days < 365), 0)
            as shipping_returns_views_365d,
        coalesce(sum(sale_views) filter (where age_days < 365), 0) as sale_views_365d,
        coalesce(sum(comparison_views) filter (where age_days < 365), 0) as comparison_views_365d
    from web_at
    group by all
),

ad_stats as (
    select
        c.cutoff_date,
        x.customer_id,
        coalesce(sum(x.impressions) filter (where x.exposure_date > c.cutoff_date - 30), 0)
            as impressions_30d,
        coalesce(sum(x.clicks) filter (where x.exposure_date > c.cutoff_date - 30), 0)
            as clicks_30d,
        coalesce(sum(x.impressions) filter (where x.exposure_date > c.cutoff_date - 90), 0)
            as impressions_90d,
        coalesce(sum(x.clicks) filter (where x.exposure_date > c.cutoff_date - 90), 0)
            as clicks_90d,
        count(distinct x.exposure_date) filter (where x.exposure_date > c.cutoff_date - 30)
            as exposure_days_30d,
        {%- for t in ['proof', 'identity', 'anxiety', 'convenience', 'value', 'performance'] %}
        coalesce(sum(x.clicks) filter (
            where x.persuasion_theme = '{{ t }}' and x.exposure_date > c.cutoff_date - 90), 0)
            as clicks_{{ t }}_90d,
        coalesce(sum(x.impressions) filter (
            where x.persuasion_theme = '{{ t }}' and x.exposure_date > c.cutoff_date - 90), 0)
            as impressions_{{ t }}_90d,
        coalesce(sum(x.clicks) filter (where x.persuasion_theme = '{{ t }}'), 0)
            as clicks_{{ t }}_365d,
        coalesce(sum(x.impressions) filter (where x.persuasion_theme = '{{ t }}'), 0)
            as impressions_{{ t }}_365d{{ "," if not loop.last }}
        {%- endfor %}
    from cutoffs as c
    inner join {{ ref('int_ads__exposures_themed') }} as x
        on x.landed_date <= c.cutoff_date
        and x.exposure_date <= c.cutoff_date
        and x.exposure_date > c.cutoff_date - 365
    group by all
),

final as (
    select
        b.cutoff_date as as_of_date,
        b.customer_id,
        o.first_order_date,
        cat.top_category,
        (b.cutoff_date - (b.created_at at time zone 'UTC')::date)::double as customer_age_days,
        coalesce(o.orders_7d, 0)::double as orders_7d,
        coalesce(o.orders_30d, 0)::double as orders_30d,
        coalesce(o.orders_90d, 0)::double as orders_90d,
        coalesce(o.orders_180d, 0)::double as orders_180d,
        coalesce(o.orders_365d, 0)::double as orders_365d,
        coalesce(o.orders_lifetime, 0)::double as orders_lifetime,
        coalesce(o.revenue_30d, 0)::double as revenue_30d,
        coalesce(o.revenue_90d, 0)::double as revenue_90d,
        coalesce(o.revenue_180d, 0)::double as revenue_180d,
        coalesce(o.revenue_365d, 0)::double as revenue_365d,
        coalesce(o.revenue_lifetime, 0)::double as revenue_lifetime,
        o.aov_lifetime::double as aov_lifetime,
        o.last_order_value::double as last_order_value,
        o.days_since_last_order::double as days_since_last_order,
        o.days_since_first_order::double as days_since_first_order,
        greatest(coalesce(o.orders_lifetime, 0) - 1, 0)::double as repeat_frequency,
        o.recency_span_days::double as recency_span_days,
        (o.recency_span_days / nullif(o.days_since_first_order, 0))::double as recency_ratio,
        (o.orders_lifetime * 30.0 / greatest(o.days_since_first_order, 30))::double
            as orders_per_month_active,
        i.mean_interorder_days::double as mean_interorder_days,
        i.std_interorder_days::double as std_interorder_days,
        (o.days_since_last_order / nullif(i.mean_interorder_days, 0))::double as overdue_ratio,
        (o.first_order_date - w.first_visit_date)::double as days_first_touch_to_first_order,
        i.first_to_second::double as days_first_to_second_order,
        o.discount_order_share::double as discount_order_share,
        o.discount_rate::double as discount_rate,
        coalesce(o.coupon_orders_365d, 0)::double as coupon_orders_365d,
        (o.revenue_90d / nullif(o.revenue_365d / 4.0, 0))::double as revenue_trend,
        coalesce(cat.category_count, 0)::double as category_count,
        cat.top_category_share::double as top_category_share,
        (coalesce(r.returned_units_365d, 0) / nullif(o.units_365d, 0))::double as return_rate_365d,
        (coalesce(r.refunds_365d, 0) / nullif(o.gross_365d, 0))::double as refund_share_365d,
        coalesce(r.returns_365d, 0)::double as returns_365d,
        coalesce(s.support_tickets_90d, 0)::double as support_tickets_90d,
        coalesce(s.support_minutes_365d, 0)::double as support_minutes_365d,
        (
            coalesce(o.contribution_before_returns_365d, 0)
            - coalesce(r.refunds_365d, 0)
            - coalesce(r.return_shipping_365d, 0)
            + coalesce(r.cost_recovered_365d, 0)
            - coalesce(s.support_minutes_365d, 0) * {{ var('support_cost_per_minute') }}
        )::double as contribution_margin_365d,
        (
            (
                coalesce(o.contribution_before_returns_365d, 0)
                - coalesce(r.refunds_365d, 0)
                - coalesce(r.return_shipping_365d, 0)
                + coalesce(r.cost_recovered_365d, 0)
                - coalesce(s.support_minutes_365d, 0) * {{ var('support_cost_per_minute') }}
            ) / nullif(o.orders_365d, 0)
        )::double as margin_per_order_365d,
        o.unpaid_order_share::double as unpaid_order_share,
        coalesce(o.paid_orders_365d, 0)::double as paid_orders_365d,
        coalesce(w.sessions_7d, 0)::double as sessions_7d,
        coalesce(w.sessions_30d, 0)::double as sessions_30d,
        coalesce(w.sessions_90d, 0)::double as sessions_90d,
        w.days_since_last_visit::double as days_since_last_visit,
        coalesce(w.product_views_7d, 0)::double as product_views_7d,
        coalesce(w.product_views_30d, 0)::double as product_views_30d,
        coalesce(w.add_to_cart_7d, 0)::double as add_to_cart_7d,
        coalesce(w.add_to_cart_30d, 0)::double as add_to_cart_30d,
        coalesce(w.checkout_starts_30d, 0)::double as checkout_starts_30d,
        greatest(coalesce(w.checkout_starts_30d, 0) - coalesce(w.web_purchases_30d, 0), 0)::double
            as abandoned_checkouts_30d,
        coalesce(w.reviews_views_30d, 0)::double as reviews_views_30d,
        coalesce(w.guarantee_views_30d, 0)::double as guarantee_views_30d,
        coalesce(w.shipping_returns_views_30d, 0)::double as shipping_returns_views_30d,
        coalesce(w.comparison_views_30d, 0)::double as comparison_views_30d,
        coalesce(w.about_views_90d, 0)::double as about_views_90d,
        coalesce(w.sale_views_90d, 0)::double as sale_views_90d,
        coalesce(w.trust_views_90d, 0)::double as trust_views_90d,
        (w.trust_views_90d / nullif(w.page_views_90d, 0))::double as trust_view_share_90d,
        coalesce(a.impressions_30d, 0)::double as impressions_30d,
        coalesce(a.clicks_30d, 0)::double as clicks_30d,
        coalesce(a.impressions_90d, 0)::double as impressions_90d,
        coalesce(a.clicks_90d, 0)::double as clicks_90d,
        coalesce(a.exposure_days_30d, 0)::double as exposure_days_30d,
        (a.clicks_90d / nullif(a.impressions_90d, 0))::double as ad_ctr_90d,
        {%- for t in ['proof', 'identity', 'anxiety', 'convenience', 'value', 'performance'] %}
        coalesce(a.clicks_{{ t }}_90d, 0)::double as clicks_{{ t }}_90d,
        {%- endfor %}
        {%- for t in ['proof', 'identity', 'anxiety', 'convenience', 'value', 'performance'] %}
        coalesce(a.impressions_{{ t }}_90d, 0)::double as impressions_{{ t }}_90d,
        {%- endfor %}
        {%- for p in ['reviews', 'about', 'guarantee', 'shipping_returns', 'sale', 'comparison'] %}
        coalesce(w.{{ p }}_views_365d, 0)::double as {{ p }}_views_365d,
        {%- endfor %}
        {%- for t in ['proof', 'identity', 'anxiety', 'convenience', 'value', 'performance'] %}
        coalesce(a.clicks_{{ t }}_365d, 0)::double as clicks_{{ t }}_365d,
        {%- endfor %}
        {%- for t in ['proof', 'identity', 'anxiety', 'convenience', 'value', 'performance'] %}
        coalesce(a.impressions_{{ t }}_365d, 0)::double as impressions_{{ t }}_365d{{ "," if not loop.last }}
        {%- endfor %}
    from customers_at as b
    left join order_stats as o using (cutoff_date, customer_id)
    left join interval_stats as i using (cutoff_date, customer_id)
    left join category_stats as cat using (cutoff_date, customer_id)
    left join return_stats as r using (cutoff_date, customer_id)
    left join support_stats as s using (cutoff_date, customer_id)
    left join web_stats as w using (cutoff_date, customer_id)
    left join ad_stats as a using (cutoff_date, customer_id)
)

select * from final
{%- endmacro %}

{#- The partition's feature dates (feature_dates) not built yet, latest first. -#}
{% macro missing_feature_dates(limit=none) -%}
    select * from ({{ feature_dates() }}) as requested
    {%- if is_incremental() %}
    where cutoff_date not in (select distinct as_of_date from {{ this }})
    {%- endif %}
    order by cutoff_date desc
    {%- if limit %}
    limit {{ limit }}
    {%- endif %}
{%- endmacro %}

{#- customer_features' post-hook: insert every feature date still missing after the model's
    own statement, one date per statement (same query, same transaction). -#}
{% macro build_missing_feature_dates() -%}
    {%- if execute -%}
        {%- set missing = run_query(
            "select cutoff_date::varchar from (" ~ feature_dates() ~ ") as requested "
            ~ "where cutoff_date not in (select distinct as_of_date from " ~ this ~ ") "
            ~ "order by cutoff_date desc") -%}
        {%- for row in missing.rows -%}
            {%- do run_query("insert into " ~ this ~ " by name " ~ customer_features_select(
                "select * from (" ~ feature_dates() ~ ") as requested where cutoff_date = date '"
                ~ row[0] ~ "'")) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}
