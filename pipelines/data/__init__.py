"""Data stage: ingest a source, validate it, snapshot it and split it (no Airflow import)."""

from pipelines.data.ingest import load_raw
from pipelines.data.snapshot import Snapshot, content_hash, read_snapshot, write_snapshot
from pipelines.data.split import Split, min_rows_required, split_rows
from pipelines.data.validate import DataValidationError, describe_source, validate

__all__ = [
    "DataValidationError",
    "Snapshot",
    "Split",
    "content_hash",
    "describe_source",
    "load_raw",
    "min_rows_required",
    "read_snapshot",
    "split_rows",
    "validate",
    "write_snapshot",
]
