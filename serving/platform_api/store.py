"""Dataset files in the artifact store (``pipelines.artifact_store``, any fsspec URL):
``<store>/datasets/<name>/<id>.parquet``; training configs under ``<store>/platform/jobs/``."""

from __future__ import annotations

import contextlib

from pipelines import artifact_store
from pipelines.artifact_store import read_parquet, write_parquet, write_text

__all__ = ["dataset_url", "job_config_url", "read_parquet", "remove", "write_parquet",
           "write_text"]  # fmt: skip


def dataset_url(store_url: str, name: str, dataset_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return artifact_store.join(store_url, "datasets", safe, f"{dataset_id}.parquet")


def job_config_url(store_url: str, job_id: str) -> str:
    return artifact_store.join(store_url, "platform", "jobs", job_id, "config.yaml")


def remove(url: str) -> None:
    """Delete one object (a write whose database row could not be added)."""
    fs, path = artifact_store.filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)
