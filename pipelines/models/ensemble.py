"""The ensemble candidate: the mean, median or weighted mean of the point forecasts of several
fitted models.

Built by ``pipelines.workflow.ensemble`` from the best ``top_k`` candidates of a run on
validation (they share the run's preprocessor, so their scaled forecasts combine directly).
``weighted``: the weights come from ``greedy_weights`` (Caruana et al. 2004, forward selection
with replacement) on the members' validation forecasts; ``cross_fit`` gives the out-of-half
forecasts its selection score is computed on (weights fitted on one half of each series'
validation windows, applied to the other).
Intervals are split-conformal on the ensemble's own validation errors, pooled over series
(``pipelines.panel.calibrate``, as for the global models): the members' intervals come from
different methods (native, conformal) and do not combine into a calibrated one.

Layout: ``forecaster.json`` (``ensemble``: the member names; ``params``: ``combine`` and, when
weighted, ``weights``) and
``members/<k>/`` (each member as ``Forecaster.save`` writes it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.models.base import Forecaster, Panel
from pipelines.models.per_series import PerSeries

COMBINE = ("mean", "median", "weighted")


def combine(
    forecasts: Sequence[np.ndarray], how: str, weights: Sequence[float] | None = None
) -> np.ndarray:
    """Element-wise mean, median or ``weights``-weighted mean of the members' forecasts (each
    the same shape)."""
    stacked = np.stack(forecasts)
    if how == "weighted":
        return np.tensordot(np.asarray(weights, dtype=float), stacked, axes=1)
    return stacked.mean(axis=0) if how == "mean" else np.median(stacked, axis=0)


def greedy_weights(
    forecasts: Sequence[np.ndarray], score: Callable[[np.ndarray], float], rounds: int
) -> np.ndarray:
    """Caruana's ensemble selection: ``rounds`` times, add (with replacement) the member whose
    addition gives the lowest ``score`` of the running mean; the weights are the counts of the
    best round's ensemble over its size (non-negative, summing to 1). Round 1 picks the best
    single member, so the result never scores worse than it on the data ``score`` sees."""
    if rounds < 1:
        raise ValueError(f"ensemble rounds must be at least 1, got {rounds}")
    stacked = np.stack([np.asarray(f, dtype=float) for f in forecasts])
    counts = np.zeros(len(stacked))
    total = np.zeros_like(stacked[0])
    best_counts, best_score = counts, np.inf
    for n in range(1, rounds + 1):
        scores = [score((total + f) / n) for f in stacked]
        pick = int(np.nanargmin(scores))
        counts = counts.copy()
        counts[pick] += 1
        total = total + stacked[pick]
        if scores[pick] < best_score:
            best_counts, best_score = counts, scores[pick]
    return best_counts / best_counts.sum()


def first_halves(windows_per_series: Sequence[int]) -> np.ndarray:
    """A mask over the windows of every series, concatenated in order: True for the first
    ``n // 2`` windows (by origin) of each series' ``n``, False for the rest (a series with one
    window is all in the second half)."""
    return np.concatenate(
        [np.arange(n) < n // 2 for n in windows_per_series] or [np.zeros(0, dtype=bool)]
    )


def cross_fit(
    forecasts: Sequence[np.ndarray],
    first: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], float],
    rounds: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-half forecasts of the weighted combination: ``greedy_weights`` fitted on the rows
    where ``first`` is True combine the other rows, and those fitted on the other rows combine
    the first ones; so no row is forecast with weights fitted on it. ``score(points, rows)``
    scores ``points``, the forecasts of the rows of boolean mask ``rows``. Returns the
    out-of-half forecasts (every row) and the weights fitted on the first and second halves."""
    stacked = np.stack([np.asarray(f, dtype=float) for f in forecasts])
    first = np.asarray(first, dtype=bool)
    if first.all() or not first.any():
        raise ValueError("cross-fitting needs windows in both halves")
    second = ~first
    w_first = greedy_weights(list(stacked[:, first]), lambda p: score(p, first), rounds)
    w_second = greedy_weights(list(stacked[:, second]), lambda p: score(p, second), rounds)
    out = np.empty_like(stacked[0])
    out[second] = combine(list(stacked[:, second]), "weighted", w_first)
    out[first] = combine(list(stacked[:, first]), "weighted", w_second)
    return out, w_first, w_second


class Ensemble(Forecaster):
    """Combines fitted ``members`` with ``combine`` ("mean", "median" or "weighted" with one
    non-negative weight per member, summing to 1)."""

    name = "ensemble"

    def __init__(
        self, horizon: int, members: Sequence[Forecaster] = (), combine: str = "mean",
        weights: Sequence[float] | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(horizon, **kwargs)
        if combine not in COMBINE:
            raise ValueError(f"ensemble combine must be one of {COMBINE}, got {combine!r}")
        short = [m.name for m in members if m.horizon < horizon]
        if short:
            raise ValueError(f"ensemble members {short} forecast fewer than {horizon} steps")
        if (combine == "weighted") != (weights is not None):
            raise ValueError("ensemble weights go with combine 'weighted' (and only with it)")
        if weights is not None:
            w = np.asarray(weights, dtype=float)
            if len(w) != len(members) or (w < 0).any() or not np.isclose(w.sum(), 1.0):
                raise ValueError(
                    f"ensemble weights must be {len(members)} non-negative numbers summing "
                    f"to 1, got {list(weights)}"
                )
        self.members = list(members)
        self.combine = combine
        self.weights = None if weights is None else [float(x) for x in weights]
        self.params = {"members": [m.name for m in self.members], "combine": combine}
        if self.weights is not None:
            self.params["weights"] = self.weights

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
        return combine([p[:, : self.horizon] for p in points], self.combine, self.weights)

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
            weights=meta["params"].get("weights"),
            level=meta["level"],
            freq=meta["freq"],
            seed=meta["seed"],
        )
        if meta["interval_halfwidth"] is not None:
            model.interval_halfwidth = np.asarray(meta["interval_halfwidth"], dtype=float)
        return model
