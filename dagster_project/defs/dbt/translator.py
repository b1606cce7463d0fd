"""How dbt nodes appear in Dagster: sources map to the ingest assets' keys (raw/<table>),
models are grouped by layer folder."""


from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings


GROUP_BY_FOLDER = {"staging": "staging", "intermediate": "intermediate", "marts": "features"}


class ProjectTranslator(DagsterDbtTranslator):
    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

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
