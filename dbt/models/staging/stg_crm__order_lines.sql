-- Order lines. Dedupe rule: one row per (order_id, line_number), earliest landed copy wins.
with source as (
    select * from {{ source('raw', 'crm__order_lines') }}
),

final as (
    select
        trim(order_id) as order_id,
        line_number,
        trim(sku) as sku,
        lower(trim(category)) as category,
        quantity,
        unit_price,
        coalesce(unit_cost, 0) as unit_cost,
        _file_date as landed_date,
        _file,
        _line
    from source
    qualify row_number() over (
        partition by order_id, line_number order by _file_date, _file, _line
    ) = 1
)

select * from final
