"""The ensemble candidate: the mean or median of the point forecasts of several fitted models.

Built by ``pipelines.workflow.ensemble`` from the best ``top_k`` candidates of a run on
validation (they share the run's preprocessor, so their scaled forecasts combine directly).
Intervals are split-conformal on the ensemble's own validation errors, pooled over series
(``pipelines.panel.calibrate``, as for the global models): the members' intervals come from
different methods (native, conformal) and do not combine into a calibrated one.

Layout: ``forecaster.json`` (``ensemble``: the member names, ``combine``) and
``members/<k>/`` (each member as ``Forecaster.save`` writes it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.models.base import Forecaster, Panel
from pipelines.models.per_series import PerSeries

COMBINE = ("mean", "median")


def combine(forecasts: Sequence[np.ndarray], how: str) -> np.ndarray:
    """Element-wise mean or median of the members' forecasts (each the same shape)."""
    stacked = np.stack(forecasts)
    return stacked.mean(axis=0) if how == "mean" else np.median(stacked, axis=0)


class Ensemble(Forecaster):
    """Combines fitted ``members`` with ``combine`` ("mean" or "median")."""

    name = "ensemble"

    def __init__(
        self, horizon: int, members: Sequence[Forecaster] = (), combine: str = "mean",
        **kwargs: Any,
    ) -> None:
        super().__init__(horizon, **kwargs)
        if combine not in COMBINE:
            raise ValueError(f"ensemble combine must be one of {COMBINE}, got {combine!r}")
        short = [m.name for m in members if m.horizon < horizon]
        if short:
            raise ValueError(f"ensemble members {short} forecast fewer than {horizon} steps")
        self.members = list(members)
        self.combine = combine
        self.params = {"members": [m.name for m in self.members], "combine": combine}

    @property
    def min_history(self) -> int:
        return max(m.min_history for m in self.members)

    @property
    def exog_inputs(self) -> tuple[int, int]:
        """The regressor widths of the members that use them (the run's, shared)."""
        return max((m.exog_inputs for m in self.members), default=(0, 0))

    @property
    def exog_lags(self) -> int:
        return max((m.exog_lags for m in self.members), default=0)

    def fit(self, y: Panel, ds: Any = None) -> Ensemble:
        """Members come fitted; nothing to do."""
        return self

    def predict(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None,
        xh: np.ndarray | None = None, xf: np.ndarray | None = None,
    ) -> np.ndarray:
        """Members with regressors get ``xh``/``xf`` (each slices what it was fitted with)."""
        histories = self._check_history(histories)
        points = []
        for member in self.members:
            if isinstance(member, PerSeries):
                points.append(member.predict(histories, last_ds, ids))
            elif any(member.exog_inputs):
                points.append(member.predict(histories, last_ds, xh=xh, xf=xf))
            else:
                points.append(member.predict(histories, last_ds))
        return combine([p[:, : self.horizon] for p in points], self.combine)

    def predict_intervals(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None,
        xh: np.ndarray | None = None, xf: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.interval_halfwidth is None:
            raise RuntimeError("ensemble: intervals need calibration on validation data")
        point = self.predict(histories, last_ds, ids, xh, xf)
        return point, point - self.interval_halfwidth, point + self.interval_halfwidth

    def save(self, path: str | Path) -> None:
        path = Path(path)
        super().save(path)
        meta = json.loads((path / "forecaster.json").read_text())
        meta["ensemble"] = self.params["members"]
        (path / "forecaster.json").write_text(json.dumps(meta, indent=2))

    def _save(self, path: Path) -> None:
        for k, member in enumerate(self.members):
            member.save(path / "members" / str(k))

    def _load(self, path: Path) -> None:
        """Unused: ``load_dir`` reads the members."""

    @classmethod
    def load_dir(cls, path: Path, meta: dict[str, Any]) -> Ensemble:
        """The ensemble saved at ``path`` with its members."""
        members = [
            Forecaster.load(path / "members" / str(k)) for k in range(len(meta["ensemble"]))
        ]
        model = cls(
            meta["horizon"],
            members,
            combine=meta["params"]["combine"],
            level=meta["level"],
            freq=meta["freq"],
            seed=meta["seed"],
        )
        if meta["interval_halfwidth"] is not None:
            model.interval_halfwidth = np.asarray(meta["interval_halfwidth"], dtype=float)
        return model
