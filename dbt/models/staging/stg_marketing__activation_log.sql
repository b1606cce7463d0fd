-- Past audience activations (treated and holdout members). Dedupe rule: one row per
-- (activation_date, customer_id, audience), earliest landed copy wins. Values are trimmed and
-- lower-cased so 'Treated ' and 'treated' are the same group.
with source as (
    select * from {{ source('raw', 'marketing__activation_log') }}
),

deduped as (
    select *
    from source
    qualify row_number() over (
        partition by activation_date, trim(customer_id), lower(trim(audience))
        order by _file_date, _file, _line
    ) = 1
),

final as (
    select
        activation_date,
        trim(customer_id) as customer_id,
        lower(trim(segment)) as segment,
        lower(trim(audience)) as audience,
        lower(trim(channel)) as channel,
        lower(trim(test_group)) as test_group,
        lower(trim(test_group)) = 'holdout' as is_holdout,
        _file_date as landed_date
    from deduped
)

select * from final
