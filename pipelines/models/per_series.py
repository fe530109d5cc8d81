"""Local models across a panel: one fitted forecaster per series, saved and served together.

``PerSeries`` is itself a ``Forecaster`` (what a bundle holds), named after the algorithm it
wraps. ``predict``/``predict_intervals`` take the series id of each window; a panel of one
series answers every id with that series' model (the single-series rule of the preprocessor).
Series models are loaded from disk on first use, so serving a panel of many series starts fast.

Layout: ``forecaster.json`` (``per_series``: the ids in order) and ``series/<k>/`` per series.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import engine
from pipelines.models.base import Forecaster, Panel, as_panel
from pipelines.models.registry import build_model
from pipelines.preprocess import UnknownSeriesError


class PerSeries(Forecaster):
    """One ``algorithm`` forecaster per series id."""

    name = "per_series"
    local = True

    def __init__(self, horizon: int, algorithm: str = "arima", **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.algorithm = algorithm
        self.name = algorithm  # what bundles and runs call it
        self.template = build_model(algorithm, horizon, **kwargs)
        self.ids: list[str] = []
        self.models: dict[str, Forecaster] = {}
        self._dir: Path | None = None

    @property
    def min_history(self) -> int:
        return self.template.min_history

    def fit(self, y: Panel, ds: Any = None, ids: Sequence[str] | None = None) -> PerSeries:
        """Fit one model per series; ``ids`` name the series (default ``0..n-1``)."""
        ys, dss = as_panel(y, ds)
        ids = [str(k) for k in (ids if ids is not None else range(len(ys)))]
        if len(ids) != len(ys):
            raise ValueError(f"{len(ids)} ids for {len(ys)} series")
        kwargs = {"level": self.level, "freq": self.freq, "seed": self.seed, **self.params}
        fitted = engine.fan_out(_fit_one, list(zip(ids, ys, dss, strict=True)),
                                (self.algorithm, self.horizon, kwargs))  # fmt: skip
        self.models = dict(zip(ids, fitted, strict=True))
        self.ids = ids
        return self

    def model(self, uid: Any) -> Forecaster:
        """The model of series ``uid`` (the only one for a panel of one series)."""
        key = self.ids[0] if len(self.ids) == 1 else str(uid)
        model = self.models.get(key)
        if model is None:
            if key not in self.ids:
                raise UnknownSeriesError(str(uid), self.ids)
            model = Forecaster.load(self._dir / "series" / str(self.ids.index(key)))
            self.models[key] = model
        return model

    def _groups(self, n: int, ids: Any) -> dict[str, np.ndarray]:
        if ids is None:
            if len(self.ids) != 1:
                raise UnknownSeriesError("<none>", self.ids)
            return {self.ids[0]: np.arange(n)}
        keys = np.asarray([str(k) for k in ids], dtype=object)
        if len(keys) != n:
            raise ValueError(f"{len(keys)} series ids for {n} windows")
        return {k: np.flatnonzero(keys == k) for k in dict.fromkeys(keys)}

    def predict(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None
    ) -> np.ndarray:
        return self.predict_intervals(histories, last_ds, ids)[0]

    def predict_intervals(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        histories = self._check_history(histories)
        out = [np.empty((histories.shape[0], self.horizon)) for _ in range(3)]
        groups = self._groups(histories.shape[0], ids)
        work = [(self.model(uid), histories[rows],
                 None if last_ds is None else np.asarray(last_ds)[rows])
                for uid, rows in groups.items()]  # fmt: skip
        for rows, parts in zip(groups.values(), engine.fan_out(_predict_one, work), strict=True):
            for arr, part in zip(out, parts, strict=True):
                arr[rows] = part
        return out[0], out[1], out[2]

    def forecast_origins(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """The one series' model's forecasts from origins (its fast path, e.g. ARIMA's Kalman
        pass); a panel of several series needs ``pipelines.panel.forecast`` and the ids."""
        if len(self.ids) != 1:
            raise UnknownSeriesError("<none>", self.ids)
        return self.model(self.ids[0]).forecast_origins(y, origins, ds)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.algorithm,
            "per_series": self.ids,
            "horizon": self.horizon,
            "level": self.level,
            "freq": self.freq,
            "seed": self.seed,
            "params": self.params,
        }
        (path / "forecaster.json").write_text(json.dumps(meta, indent=2))
        for k, uid in enumerate(self.ids):
            self.model(uid).save(path / "series" / str(k))

    @classmethod
    def load_dir(cls, path: Path, meta: dict[str, Any]) -> PerSeries:
        """The per-series forecaster saved at ``path``; series models load on first use."""
        model = cls(
            meta["horizon"],
            algorithm=meta["name"],
            level=meta["level"],
            freq=meta["freq"],
            seed=meta["seed"],
            **meta["params"],
        )
        model.ids = [str(k) for k in meta["per_series"]]
        model._dir = Path(path)
        return model

    def _save(self, path: Path) -> None:
        """Unused: ``save`` writes each series' model."""

    def _load(self, path: Path) -> None:
        """Unused: ``load_dir`` reads lazily."""


def _fit_one(item: tuple[str, np.ndarray, Any], shared: tuple[str, int, dict[str, Any]]
             ) -> Forecaster:  # fmt: skip
    """One series' model (a fan-out task: ``pipelines.engine``)."""
    uid, y, ds = item
    algorithm, horizon, kwargs = shared
    try:
        return build_model(algorithm, horizon, **kwargs).fit(y, ds)
    except ValueError as exc:
        raise ValueError(f"{algorithm} on series {uid!r}: {exc}") from exc


def _predict_one(item: tuple[Forecaster, np.ndarray, Any], _shared: None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    model, histories, last_ds = item
    return model.predict_intervals(histories, last_ds)
