"""
### feature_materialize

Keeps the Feast online store current (`pipelines/feature_store.py`).

`publish`: the feature views' sources as Parquet in the artifact store, and the entities and
views in Feast's registry: `etth1_covariates` (ETTh1's hourly load covariates, keyed by
series) and `ai4i_machine` (AI4I 2020's machine records, keyed by `UDI`, record UDI stamped
2020-01-01 UTC + UDI minutes).
`materialize`: the values stamped up to `end` (default: now) into the
online store, a view at a time, the newest per entity; serving reads them there (Feast's
feature server), training reads the offline store point in time. `tidemill up` and
`tidemill features sync` run the same two steps.

**Trigger form:** `source` (the ETTh1-layout CSV), `ai4i_source` (the AI4I 2020 CSV; empty
skips it), `end` (ISO time; empty = now).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task

from pipelines.feature_sources import AI4I_VIEW, ETTH1_VIEW, SHIPPED_SOURCES
from tidemill.dag_support import home as _home
from tidemill.dag_support import retry_args


@dag(
    dag_id="feature_materialize",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["tidemill", "features"],
    default_args=retry_args(1, 30),
    max_active_runs=1,
    params={
        "source": Param(str(SHIPPED_SOURCES[ETTH1_VIEW]), type="string", title="Source CSV"),
        "ai4i_source": Param(str(SHIPPED_SOURCES[AI4I_VIEW]), type=["null", "string"],
                             title="AI4I 2020 CSV (machine features)"),
        "end": Param(None, type=["null", "string"], title="Materialise up to (ISO time)"),
    },
)
def feature_materialize() -> None:
    @task
    def publish(params: dict[str, Any]) -> list[str]:
        from pipelines.feature_store import publish_csvs

        return publish_csvs(_home(), {ETTH1_VIEW: params["source"],
                                      AI4I_VIEW: params["ai4i_source"]})

    @task
    def materialize(source_url: list[str], params: dict[str, Any]) -> dict[str, Any]:
        from pipelines.feature_store import MATERIALIZE_FROM, materialize_end
        from pipelines.feature_store import materialize as run

        return run(_home(), MATERIALIZE_FROM, materialize_end(params["end"])) | {
            "source": source_url}

    materialize(publish())


feature_materialize()
