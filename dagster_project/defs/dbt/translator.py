"""How dbt nodes appear in Dagster: sources map to the ingest assets' keys (raw/<table>),
models are grouped by layer folder, and a model without a dbt description is described by the
comment its SQL opens with."""


import re
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

GROUP_BY_FOLDER = {"staging": "staging", "intermediate": "intermediate", "marts": "features"}

# An optional leading Jinja block ({{ config(...) }}), then the first run of `--` comment lines.
_LEADING_COMMENT = re.compile(r"\A\s*(?:\{\{.*?\}\}\s*)?((?:[ \t]*--[^\n]*(?:\n|\Z))+)", re.DOTALL)


def leading_comment(sql: str) -> str:
    """The comment block a model's SQL opens with (after its config block), as one paragraph."""
    m = _LEADING_COMMENT.match(sql or "")
    if not m:
        return ""
    lines = (line.strip()[2:].strip() for line in m.group(1).splitlines())
    return " ".join(line for line in lines if line)


class ProjectTranslator(DagsterDbtTranslator):
    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """Without it a model that has no yml description reads "dbt model <name>" in the asset
        graph and catalog; its SQL's opening comment says what it is (the raw SQL still follows)."""
        props = dbt_resource_props
        if props.get("resource_type") == "model" and not (props.get("description") or "").strip():
            header = leading_comment(props.get("raw_code") or props.get("raw_sql") or "")
            if header:
                props = {**props, "description": header}
        return super().get_description(props)

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=dg.AssetKey(["raw", props["name"]]))
        folder = props["fqn"][1] if len(props["fqn"]) > 2 else "dbt"
        return spec.replace_attributes(
            group_name=GROUP_BY_FOLDER.get(folder, folder),
            kinds={"dbt", "duckdb"},
        )
