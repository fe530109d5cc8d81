"""The feature views' names and the project's CSVs they are published from by default (the
``feature_materialize`` DAG's trigger form, ``tidemill up``). Imports nothing heavy: the DAG
file reads it when Airflow parses it."""

from __future__ import annotations

from pipelines.project_dir import PROJECT_DIR

ETTH1_VIEW = "etth1_covariates"
AI4I_VIEW = "ai4i_machine"
_DATA = PROJECT_DIR / "data"
SHIPPED_SOURCES = {ETTH1_VIEW: _DATA / "ETTh1.csv", AI4I_VIEW: _DATA / "ai4i2020.csv"}
