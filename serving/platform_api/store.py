"""Dataset files in the artifact store: ``<store>/datasets/<name>/<id>.parquet``."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pandas as pd


def dataset_url(store_url: str, name: str, dataset_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"{store_url.rstrip('/')}/datasets/{safe}/{dataset_id}.parquet"


def _local(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def write_parquet(frame: pd.DataFrame, url: str) -> str:
    """Write atomically (a temporary file renamed): readers never see half a file."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    path = _local(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return url


def read_parquet(url: str) -> pd.DataFrame:
    return pd.read_parquet(_local(url))


def local_path(url: str) -> str:
    """Where a training task reads the file (the store is a local folder here)."""
    return str(_local(url))


def write_text(url: str, text: str) -> str:
    path = _local(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return url


def remove(url: str) -> None:
    _local(url).unlink(missing_ok=True)
