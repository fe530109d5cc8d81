"""Feature builders, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.features import (
    calendar_features,
    freq_to_timedelta,
    lag_matrix,
    rolling_stats,
    target_timestamps,
)

WINDOWS = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 0.0, 0.0]])


def test_lag_matrix_most_recent_first() -> None:
    np.testing.assert_array_equal(lag_matrix(WINDOWS, 2), [[4.0, 3.0], [0.0, 0.0]])
    np.testing.assert_array_equal(lag_matrix(WINDOWS[:1], 4), [[4.0, 3.0, 2.0, 1.0]])


@pytest.mark.parametrize("n_lags", [0, 5])
def test_lag_matrix_rejects_bad_lag_count(n_lags: int) -> None:
    with pytest.raises(ValueError, match="n_lags"):
        lag_matrix(WINDOWS, n_lags)


def test_rolling_stats_mean_and_std() -> None:
    expected = [
        [3.5, 0.5, 2.5, np.sqrt(1.25)],
        [0.0, 0.0, 5.0, 5.0],
    ]
    np.testing.assert_allclose(rolling_stats(WINDOWS, [2, 4]), expected)
    with pytest.raises(ValueError, match="rolling window"):
        rolling_stats(WINDOWS, [5])


def test_calendar_features_known_dates() -> None:
    # Monday 06:00 in January; Saturday 18:30 in July.
    ts = np.array(["2024-01-01T06:00", "2023-07-15T18:30"], dtype="datetime64[ns]")
    hour = 2 * np.pi * np.array([6.0, 18.5]) / 24
    dow = 2 * np.pi * np.array([0.0, 5.0]) / 7
    month = 2 * np.pi * np.array([0.0, 6.0]) / 12
    expected = np.stack(
        [np.sin(hour), np.cos(hour), np.sin(dow), np.cos(dow), np.sin(month), np.cos(month)],
        axis=1,
    )
    np.testing.assert_allclose(calendar_features(ts), expected, atol=1e-12)
    np.testing.assert_allclose(calendar_features(ts)[0], [1, 0, 0, 1, 0, 1], atol=1e-12)


def test_calendar_features_keep_input_shape() -> None:
    ts = np.arange(6).astype("datetime64[h]").reshape(2, 3)
    assert calendar_features(ts).shape == (2, 3, 6)


def test_target_timestamps_cross_midnight() -> None:
    last = np.array(["2024-01-01T23:00", "2024-02-28T12:00"], dtype="datetime64[ns]")
    got = target_timestamps(last, 2, "h")
    expected = np.array(
        [["2024-01-02T00:00", "2024-01-02T01:00"], ["2024-02-28T13:00", "2024-02-28T14:00"]],
        dtype="datetime64[ns]",
    )
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.dtype("datetime64[ns]")


def test_target_timestamps_multiplied_frequency() -> None:
    got = target_timestamps(np.array(["2024-01-01T00:00"], dtype="datetime64[ns]"), 2, "15min")
    expected = np.array([["2024-01-01T00:15", "2024-01-01T00:30"]], dtype="datetime64[ns]")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("freq", "expected"), [("h", 1), ("2H", 2), ("D", 24), ("W", 168)])
def test_freq_to_timedelta(freq: str, expected: int) -> None:
    assert freq_to_timedelta(freq) == np.timedelta64(expected, "h")


@pytest.mark.parametrize("freq", ["M", "MS", "B", "", "h2"])
def test_freq_to_timedelta_rejects_calendar_offsets(freq: str) -> None:
    with pytest.raises(ValueError, match="unsupported frequency"):
        freq_to_timedelta(freq)
