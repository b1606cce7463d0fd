{#- The partition date as a DATE literal, validated, so a bad var fails loudly at compile. -#}
{% macro as_of_date() -%}
    {%- set v = var('as_of_date') | string -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', v) -%}
        {{ exceptions.raise_compiler_error("var as_of_date must be YYYY-MM-DD, got " ~ v) }}
    {%- endif -%}
    date '{{ v }}'
{%- endmacro %}

{#- End of the partition day as a UTC timestamptz: events strictly before it are visible. -#}
{% macro as_of_end() -%}
    (({{ as_of_date() }} + interval 1 day)::timestamp at time zone 'UTC')
{%- endmacro %}

{#- The dates a partition builds features for: as_of_date (k = 0, for scoring) and the
    training cutoffs as_of_date - step * k: every k = 1..n_cutoffs (the recent weeks), then
    every long_cutoff_every-th k up to long_cutoffs (a year of training cutoffs behind the
    longest label window, sparse so a cold start builds 30 dates, not 66). -#}
{% macro feature_dates(min_k=0) -%}
    select
        ({{ as_of_date() }} - (k * {{ var('cutoff_step_days') | int }})::integer)::date as cutoff_date,
        k::integer as cutoff_index
    from range({{ min_k }}, {{ [var('n_cutoffs') | int, var('long_cutoffs') | int] | max }} + 1) as t(k)
    where k <= {{ var('n_cutoffs') | int }} or k % {{ var('long_cutoff_every') | int }} = 0
{%- endmacro %}
