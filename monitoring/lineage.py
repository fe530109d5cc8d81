"""The drift reference from MLflow lineage: the champion's training snapshot and validation MAE.

Training registers each version with the tags ``tidemill.snapshot_path`` and
``tidemill.snapshot_sha256`` (``pipelines.workflow._lineage_tags``); its run logs ``val_mae``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from pipelines.data.snapshot import read_snapshot

SNAPSHOT_PATH_TAG = "tidemill.snapshot_path"
SNAPSHOT_SHA_TAG = "tidemill.snapshot_sha256"
VAL_MAE_METRIC = "val_mae"


@dataclass(frozen=True)
class ChampionLineage:
    """Where a registered version came from."""

    model: str
    version: str
    run_id: str
    snapshot_path: Path
    snapshot_sha256: str
    val_mae: float | None

    def load_reference(self) -> pd.DataFrame:
        """The training snapshot, checked against its recorded content hash."""
        return read_snapshot(self.snapshot_path, expected_sha256=self.snapshot_sha256)


def champion_lineage(tracking_uri: str, model: str, alias: str = "champion") -> ChampionLineage:
    """Lineage of the version behind ``alias``; raises ValueError if its tags are missing."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version_by_alias(model, alias)
    missing = [t for t in (SNAPSHOT_PATH_TAG, SNAPSHOT_SHA_TAG) if not mv.tags.get(t)]
    if missing:
        raise ValueError(f"{model} version {mv.version} ({alias}) lacks lineage tag(s) {missing}")
    val_mae = client.get_run(mv.run_id).data.metrics.get(VAL_MAE_METRIC) if mv.run_id else None
    return ChampionLineage(
        model=model,
        version=str(mv.version),
        run_id=mv.run_id or "",
        snapshot_path=Path(mv.tags[SNAPSHOT_PATH_TAG]),
        snapshot_sha256=mv.tags[SNAPSHOT_SHA_TAG],
        val_mae=val_mae,
    )
