"""Per-window scaling shared by the global models (nlinear, XGBoost, LightGBM).

Under ``window_scale: seasonal`` each input window, less its last value, is divided by its
mean absolute ``season``-step difference (MASE's scale) plus ``scale_offset``, the target
(the change from the last value) by the same number, and the forecast multiplied back, so
every window weighs alike in a fit whatever its series' amplitude."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("none", "seasonal")
FLOOR = 1e-3
"""The smallest divisor: the values are scaled per series, so a thousandth of its spread."""


@dataclass(frozen=True)
class WindowScale:
    """``window_scale``, ``season`` and ``scale_offset`` of a model, checked."""

    mode: str = "none"
    season: int = 24
    offset: float = 0.0

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any], lookback: int) -> WindowScale:
        """The model ``name``'s scaling from its params; ``ValueError`` naming the field."""
        scale = cls(str(params.get("window_scale", "none")), int(params.get("season", 24)),
                    float(params.get("scale_offset", 0.0)))
        if scale.mode not in MODES:
            raise ValueError(f"{name}: window_scale must be 'none' or 'seasonal', got "
                             f"{scale.mode!r}")
        if scale.mode == "seasonal" and not 1 <= scale.season < lookback:
            raise ValueError(f"{name}: window_scale 'seasonal' needs 1 <= season < lookback="
                             f"{lookback}, got season {scale.season}")
        if not scale.offset >= 0:
            raise ValueError(f"{name}: scale_offset must be >= 0, got {scale.offset}")
        return scale

    @property
    def on(self) -> bool:
        return self.mode != "none"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Each window's divisor, ``(n_windows, 1)``: ones, or under ``seasonal`` its mean
        absolute ``season``-step difference plus ``offset`` (floored at ``FLOOR``)."""
        if not self.on:
            return np.ones((len(x), 1))
        diff = np.abs(x[:, self.season :] - x[:, : -self.season]).mean(axis=1, keepdims=True)
        return np.maximum(diff + self.offset, FLOOR)
