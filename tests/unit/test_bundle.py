"""Future timestamps of a forecast: fixed-length and calendar frequencies."""

import numpy as np

from pipelines.bundle import future_timestamps


def _ts(*values: str) -> np.ndarray:
    return np.array(values, dtype="datetime64[ns]")


def test_fixed_frequency_steps():
    out = future_timestamps(_ts("2024-01-31T22:00", "2024-03-01"), 3, "h")
    assert (
        out.tolist()
        == _ts(
            "2024-01-31T23:00",
            "2024-02-01T00:00",
            "2024-02-01T01:00",
            "2024-03-01T01:00",
            "2024-03-01T02:00",
            "2024-03-01T03:00",
        )
        .reshape(2, 3)
        .tolist()
    )


def test_calendar_frequencies_roll_forward_from_each_timestamp():
    assert (
        future_timestamps(_ts("2024-01-31"), 2, "MS").tolist()
        == _ts("2024-02-01", "2024-03-01").reshape(1, 2).tolist()
    )
    friday = _ts("2024-01-05")
    assert (
        future_timestamps(friday, 2, "B").tolist()
        == _ts("2024-01-08", "2024-01-09").reshape(1, 2).tolist()
    )
