"""Asset lineage as data: which pipeline's task produces each asset, and which pipelines an
asset schedules (``schedule: {assets: [...]}``) or a task sensor of theirs waits on."""
from __future__ import annotations

from typing import Mapping

from pipectl.model.pipeline import AssetSchedule, Pipeline


def asset_lineage(pipelines: Mapping[str, Pipeline]) -> dict:
    """``{"assets": {asset: {"producers": ["pipeline.task", ...], "consumers": ["pipeline", ...]}}}``,
    assets and names sorted; an asset a schedule names but nothing produces has no producers."""
    assets: dict[str, dict[str, set]] = {}

    def entry(name: str) -> dict[str, set]:
        return assets.setdefault(name, {"producers": set(), "consumers": set()})

    for p in pipelines.values():
        for task in p.tasks.values():
            for name in task.produces:
                entry(name)["producers"].add(f"{p.name}.{task.name}")
        for s in p.schedules:
            if isinstance(s, AssetSchedule):
                for name in s.assets:
                    entry(name)["consumers"].add(p.name)
    return {"assets": {name: {k: sorted(v) for k, v in sides.items()} for name, sides in sorted(assets.items())}}
