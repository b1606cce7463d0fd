from dagster_project.lib import contract_docs
from dagster_project.lib.contract import TABLES


def test_dbt_sources_yaml_matches_the_contract():
    assert contract_docs.SOURCES_YML.read_text() == contract_docs.render_sources_yaml(), (
        "dbt/models/staging/__sources.yml drifted: run python -m dagster_project.lib.contract_docs")


def test_data_readme_documents_every_column_of_the_contract():
    text = contract_docs.README.read_text()
    assert text == contract_docs.render_readme(text)
    for t in TABLES:
        for c in t.columns:
            assert f"| `{c.name}` | {c.type} |" in text, (t.raw_name, c.name)


def test_only_crm_customers_orders_and_lines_are_required():
    required = {t.raw_name for t in TABLES if not t.optional}
    assert required == {"crm__customers", "crm__orders", "crm__order_lines"}
