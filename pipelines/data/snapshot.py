"""Content-addressed Parquet snapshots of a validated frame.

The hash covers the data (column names, dtypes and every value), not the Parquet bytes, so it
is the same across runs and pandas/pyarrow versions that write different file metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Snapshot:
    """A written snapshot: its file, content hash and row count."""

    path: Path
    sha256: str
    rows: int


def content_hash(df: pd.DataFrame) -> str:
    """SHA-256 of the column names, dtypes and values (the index is ignored)."""
    digest = hashlib.sha256()
    schema = [[str(col), str(dtype)] for col, dtype in df.dtypes.items()]
    digest.update(json.dumps({"rows": len(df), "columns": schema}).encode())
    for col in df.columns:
        values = pd.util.hash_pandas_object(df[col], index=False).to_numpy()
        digest.update(values.astype("<u8").tobytes())
    return digest.hexdigest()


def write_snapshot(df: pd.DataFrame, out_dir: Path) -> Snapshot:
    """Write ``df`` to ``out_dir/snapshot-<sha256[:12]>.parquet`` once; same data, same file.

    The file is written to a temporary name, checked to read back to the same hash, and renamed
    atomically, so readers never see a partial snapshot.
    """
    sha256 = content_hash(df)
    out_dir = Path(out_dir)
    path = out_dir / f"snapshot-{sha256[:12]}.parquet"
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=".snapshot-", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            df.to_parquet(tmp, index=False)
            read_snapshot(tmp, expected_sha256=sha256)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return Snapshot(path=path, sha256=sha256, rows=len(df))


def read_snapshot(path: Path, expected_sha256: str | None = None) -> pd.DataFrame:
    """Read a snapshot; with ``expected_sha256``, raise ValueError if the content differs."""
    df = pd.read_parquet(path)
    if expected_sha256 is not None:
        actual = content_hash(df)
        if actual != expected_sha256:
            raise ValueError(
                f"snapshot {path} has content hash {actual}, expected {expected_sha256} "
                "(the file changed, or its dtypes do not survive a Parquet round trip)"
            )
    return df
