"""The drift reference from MLflow lineage: the champion's training snapshot and validation MAE.

Training registers each version with the tags ``tidemill.snapshot_url`` (the snapshot in the
artifact store) and ``tidemill.snapshot_sha256`` (``pipelines.workflow._lineage_tags``); its
run logs ``val_mae``. Versions registered before snapshots had URLs carry
``tidemill.snapshot_path`` (a local path, which is a URL of the local store too).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from mlflow import MlflowClient

from pipelines.data.snapshot import read_snapshot

SNAPSHOT_URL_TAG = "tidemill.snapshot_url"
SNAPSHOT_PATH_TAG = "tidemill.snapshot_path"  # versions registered before URLs
SNAPSHOT_SHA_TAG = "tidemill.snapshot_sha256"
VAL_MAE_METRIC = "val_mae"


@dataclass(frozen=True)
class ChampionLineage:
    """Where a registered version came from."""

    model: str
    version: str
    run_id: str
    snapshot_url: str
    snapshot_sha256: str
    val_mae: float | None

    def load_reference(self) -> pd.DataFrame:
        """The training snapshot, checked against its recorded content hash."""
        return read_snapshot(self.snapshot_url, expected_sha256=self.snapshot_sha256)


def champion_lineage(tracking_uri: str, model: str, alias: str = "champion") -> ChampionLineage:
    """Lineage of the version behind ``alias``; raises ValueError if its tags are missing."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version_by_alias(model, alias)
    url = mv.tags.get(SNAPSHOT_URL_TAG) or mv.tags.get(SNAPSHOT_PATH_TAG)
    found = {SNAPSHOT_URL_TAG: url, SNAPSHOT_SHA_TAG: mv.tags.get(SNAPSHOT_SHA_TAG)}
    missing = [tag for tag, value in found.items() if not value]
    if missing:
        raise ValueError(f"{model} version {mv.version} ({alias}) lacks lineage tag(s) {missing}")
    val_mae = client.get_run(mv.run_id).data.metrics.get(VAL_MAE_METRIC) if mv.run_id else None
    return ChampionLineage(
        model=model,
        version=str(mv.version),
        run_id=mv.run_id or "",
        snapshot_url=url,
        snapshot_sha256=mv.tags[SNAPSHOT_SHA_TAG],
        val_mae=val_mae,
    )
