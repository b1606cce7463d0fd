{#- True only when `value` is a clear yes (var consent_yes, trimmed, any case); false for
    anything else, NULL and unknown text included: consent fails closed. -#}
{% macro consent_given(value) -%}
    coalesce(lower(trim({{ value }}::varchar)) in (
        {%- for v in var('consent_yes') %}'{{ v | lower }}'{{ ", " if not loop.last }}{% endfor -%}
    ), false)
{%- endmacro %}
