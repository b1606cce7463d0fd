{#- Generic tests kept in the project so it needs no package download (dbt deps needs a
    network path to hub.getdbt.com that CI machines may not have). -#}
{% test unique_key_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test expression_is_true_for_all(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
