"""Write ``hourly_long.parquet`` (unique_id, ds, y) from the M4 hourly CSVs beside this file.

Each series is its training values followed by its 48 test values, so the M4 protocol is the
split ``test_size: 48`` of the last rows of each series. M4 gives no timestamps: the steps are
hourly and every series ends at 2016-12-31 23:00 (ends aligned, so a common cut and the
per-series cut are the same). Run: ``python data/m4/to_long.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
END = np.datetime64("2016-12-31T23:00", "ns")


def wide_rows(path: Path) -> dict[str, np.ndarray]:
    """Series id -> its values (trailing empty cells dropped)."""
    wide = pd.read_csv(path, index_col="V1")
    return {str(uid): row.dropna().to_numpy(float) for uid, row in wide.iterrows()}


def main() -> None:
    train = wide_rows(HERE / "Hourly-train.csv")
    test = wide_rows(HERE / "Hourly-test.csv")
    frames = []
    for uid, values in train.items():
        y = np.concatenate([values, test[uid]])
        ds = END - np.arange(len(y))[::-1] * np.timedelta64(1, "h")
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    long = pd.concat(frames, ignore_index=True)
    long.to_parquet(HERE / "hourly_long.parquet", index=False)
    print(f"{len(train)} series, {len(long)} rows -> {HERE / 'hourly_long.parquet'}")


if __name__ == "__main__":
    main()
