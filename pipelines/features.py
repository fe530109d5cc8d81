"""Feature builders for tabular forecasters: lags, rolling statistics and calendar terms.

Pure numpy functions over windows of a scaled series, shape ``(n_windows, L)`` with the most
recent value last. Serving imports this module, so it must stay free of heavy imports.
"""

from __future__ import annotations

import re

import numpy as np

# Fixed-length frequencies only: calendar offsets (month-end, business days) are not supported.
_FREQ_UNITS = {"s": "s", "min": "m", "t": "m", "h": "h", "d": "D", "w": "W"}


def lag_matrix(histories: np.ndarray, n_lags: int) -> np.ndarray:
    """The last ``n_lags`` values of each window, lag 1 (most recent) in column 0."""
    histories = np.atleast_2d(np.asarray(histories, dtype=float))
    if not 1 <= n_lags <= histories.shape[1]:
        raise ValueError(f"n_lags must be in [1, {histories.shape[1]}], got {n_lags}")
    return histories[:, : -n_lags - 1 : -1]


def rolling_stats(
    histories: np.ndarray, windows: tuple[int, ...] | list[int], out: np.ndarray | None = None
) -> np.ndarray:
    """Mean and (population) std of the last ``w`` values for each ``w``.

    Returns ``(n_windows, 2 * len(windows))`` ordered ``mean_w1, std_w1, mean_w2, std_w2, ...``,
    written into ``out`` when given. The numbers are ``np.mean`` and ``np.std``'s, bit for bit
    (the same reductions), with each mean computed once.
    """
    histories = np.atleast_2d(np.asarray(histories, dtype=float))
    if out is None:
        out = np.empty((histories.shape[0], 2 * len(windows)))
    for j, w in enumerate(windows):
        if not 1 <= w <= histories.shape[1]:
            raise ValueError(f"rolling window must be in [1, {histories.shape[1]}], got {w}")
        tail = histories[:, -w:]
        mean = np.add.reduce(tail, axis=1, keepdims=True)
        mean /= w
        dev = tail - mean
        np.multiply(dev, dev, out=dev)
        out[:, 2 * j] = mean[:, 0]
        std = np.add.reduce(dev, axis=1, out=out[:, 2 * j + 1])
        std /= w
        np.sqrt(std, out=std)
    return out


def calendar_features(timestamps: np.ndarray) -> np.ndarray:
    """Sin/cos encodings of hour-of-day, day-of-week and month, shape ``(*shape, 6)``.

    Columns: ``sin_hour, cos_hour, sin_dow, cos_dow, sin_month, cos_month``. Hour includes the
    minutes as a fraction; day-of-week counts Monday as 0; month counts January as 0.
    """
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    days = ts.astype("datetime64[D]")
    hour = (ts - days) / np.timedelta64(1, "h")
    dow = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    month = ts.astype("datetime64[M]").astype(np.int64) % 12
    angles = [2 * np.pi * hour / 24.0, 2 * np.pi * dow / 7.0, 2 * np.pi * month / 12.0]
    return np.stack([f(a) for a in angles for f in (np.sin, np.cos)], axis=-1)


def freq_to_timedelta(freq: str) -> np.timedelta64:
    """Parse a fixed frequency such as ``"h"``, ``"15min"`` or ``"D"`` into a timedelta."""
    match = re.fullmatch(r"(\d*)\s*([a-zA-Z]+)", freq.strip())
    unit = _FREQ_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"unsupported frequency {freq!r}; use e.g. 'h', '15min', 'D', 'W'")
    return np.timedelta64(int(match.group(1) or 1), unit)


def target_timestamps(last_ds: np.ndarray, horizon: int, freq: str = "h") -> np.ndarray:
    """Timestamps of the ``horizon`` steps after each ``last_ds``, shape ``(n, horizon)``."""
    last_ds = np.asarray(last_ds, dtype="datetime64[ns]").reshape(-1, 1)
    steps = np.arange(1, horizon + 1) * freq_to_timedelta(freq)
    return last_ds + steps.astype("timedelta64[ns]")
