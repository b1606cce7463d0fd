-- Customer record versions, deduplicated and normalised. A customer may have several versions
-- (a consent change arrives as a new row); marts pick the latest version landed by as_of_date.
-- Dedupe rule: an exact re-send (every value equal) keeps the earliest landed copy. A version that
-- differs in any value is kept, even with an unchanged updated_at (a consent withdrawal written
-- without touching updated_at), and customer_profile takes the latest landed one.
with source as (
    select * from {{ source('raw', 'crm__customers') }}
),

renamed as (
    select
        trim(customer_id) as customer_id,
        nullif(lower(trim(email)), '') as email_normalized,
        nullif(trim(phone), '') as phone,
        nullif(trim(first_name), '') as first_name,
        nullif(trim(last_name), '') as last_name,
        nullif(upper(trim(country)), '') as country,
        nullif(trim(zip), '') as zip,
        created_at,
        updated_at,
        {{ consent_given('marketing_consent') }} as marketing_consent,
        _file_date as landed_date,
        _file,
        _line
    from source
),

final as (
    select *
    from renamed
    qualify row_number() over (
        partition by customer_id, updated_at, email_normalized, phone, first_name, last_name,
            country, zip, created_at, marketing_consent
        order by landed_date, _file, _line
    ) = 1
)

select * from final
