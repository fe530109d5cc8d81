"""Data stage: ingest a source, validate it, snapshot it and split it (no Airflow import)."""

from pipelines.data.ingest import load_raw
from pipelines.data.snapshot import Snapshot, content_hash, read_snapshot, write_snapshot
from pipelines.data.split import (
    Split,
    min_rows_required,
    split_labels,
    split_problems,
    split_rows,
)
from pipelines.data.validate import (
    DataValidationError,
    describe_source,
    validate,
    validate_panel,
)

__all__ = [
    "DataValidationError",
    "Snapshot",
    "Split",
    "content_hash",
    "describe_source",
    "load_raw",
    "min_rows_required",
    "read_snapshot",
    "split_labels",
    "split_problems",
    "split_rows",
    "validate",
    "validate_panel",
    "write_snapshot",
]
