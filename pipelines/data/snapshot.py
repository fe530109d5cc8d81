"""Content-addressed Parquet snapshots of a validated frame.

The hash covers the data (column names, dtypes and every value), not the Parquet bytes, so it
is the same across runs and pandas/pyarrow versions that write different file metadata.
Snapshots live in the artifact store (``pipelines.artifact_store``) and are named by URL.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from pipelines import artifact_store


@dataclass(frozen=True)
class Snapshot:
    """A written snapshot: its URL in the artifact store, content hash and row count."""

    url: str
    sha256: str
    rows: int


def content_hash(df: pd.DataFrame) -> str:
    """SHA-256 of the column names, dtypes and values (the index is ignored)."""
    schema = [[str(col), str(dtype)] for col, dtype in df.dtypes.items()]
    return _digest(len(df), schema, lambda k: df.iloc[:, k])


def _digest(rows: int, schema: list[list[str]], column: Callable[[int], pd.Series]) -> str:
    """``content_hash`` of ``rows`` rows with ``schema`` (name, dtype), column ``k`` given by
    ``column(k)``: one column's values are hashed at a time."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"rows": rows, "columns": schema}).encode())
    for k in range(len(schema)):
        values = pd.util.hash_pandas_object(column(k), index=False).to_numpy()
        digest.update(values.astype("<u8", copy=False))
    return digest.hexdigest()


def _parquet_hash(data: bytes) -> str:
    """``content_hash`` of the frame ``pd.read_parquet`` reads from ``data``, read one column
    at a time (twice: the dtypes go first into the hash), so the frame is never whole."""
    import pyarrow.parquet as pq

    names = pq.read_schema(io.BytesIO(data)).names

    def column(k: int) -> pd.Series:
        return pd.read_parquet(io.BytesIO(data), columns=[names[k]]).iloc[:, 0]

    schema = [[name, str(column(k).dtype)] for k, name in enumerate(names)]
    rows = pq.read_metadata(io.BytesIO(data)).num_rows
    return _digest(rows, schema, column)


def write_snapshot(df: pd.DataFrame, out_url: str) -> Snapshot:
    """Write ``df`` to ``out_url/snapshot-<sha256[:12]>.parquet`` once; same data, same object.

    The bytes are checked to read back to the same hash before the one atomic write, so
    readers never see a partial snapshot.
    """
    sha256 = content_hash(df)
    url = artifact_store.join(str(out_url), f"snapshot-{sha256[:12]}.parquet")
    if not artifact_store.exists(url):
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False)
        data = buffer.getvalue()  # one copy of the bytes (BytesIO(data) shares it)
        del buffer
        written = _parquet_hash(data)
        if written != sha256:
            raise ValueError(
                f"snapshot {url} would read back with content hash {written}, not {sha256} "
                "(its dtypes do not survive a Parquet round trip)"
            )
        artifact_store.write_bytes(url, data)
    return Snapshot(url=url, sha256=sha256, rows=len(df))


def read_snapshot(url: str, expected_sha256: str | None = None) -> pd.DataFrame:
    """Read a snapshot; with ``expected_sha256``, raise ValueError if the content differs."""
    df = artifact_store.read_parquet(str(url))
    if expected_sha256 is not None:
        _checked(df, url, expected_sha256)
    return df


def _checked(df: pd.DataFrame, url: str, expected_sha256: str) -> None:
    actual = content_hash(df)
    if actual != expected_sha256:
        raise ValueError(
            f"snapshot {url} has content hash {actual}, expected {expected_sha256} "
            "(the file changed, or its dtypes do not survive a Parquet round trip)"
        )
