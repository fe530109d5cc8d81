"""Gradient-boosted trees on lag features: rolled forward one step at a time (``recursive``),
or one booster per horizon step or block of steps, each from the origin (``direct``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from numpy.lib.stride_tricks import sliding_window_view

from pipelines import engine
from pipelines.exogenous import history_windows
from pipelines.features import calendar_features, lag_matrix, rolling_stats, target_timestamps
from pipelines.models.base import Forecaster, Panel, as_panel
from pipelines.models.window_scale import WindowScale

# Rolling mean/std windows, each used when it fits in the lookback.
ROLLING_WINDOWS = (6, 24, 168)
CHUNK_SERIES = 512
"""Series whose training rows are built at a time (one chunk the booster reads; it keeps only
its binned rows)."""


class XGBoostForecaster(Forecaster):
    """XGBoost model, by default recursive one-step: predicts ``y[t+1] - y[t]`` from the window
    ending at ``t``, then feeds its own forecast back in, ``horizon`` times, for all windows
    at once.

    ``strategy`` (``recursive``, the default, or ``direct``): recursive serves every horizon (up
    to 720 steps) with one booster at the cost of compounding errors. ``direct`` fits
    ``direct_steps`` boosters (default: one per horizon step), each for a contiguous block of
    steps, predicting ``y[t+h] - y[t]`` from the features of the window ending at ``t`` plus
    the step ``h`` (a column), so no forecast is fed back and errors do not compound. A block
    of several steps takes one row per training window, its step drawn uniformly from the
    block (seeded), so a fit costs ``direct_steps`` boosters on about as many rows as the
    recursive one; the blocks train independently (``pipelines.engine.fan_out``). Damping is
    the roll-out's and does not apply to ``direct``; its calendar and future-regressor columns
    are those of the predicted step, its historical regressors those at the origin (age
    ``h - 1``, the column the roll-out fills with its step).
    Predicting the change from the last value keeps the trees valid when the level drifts
    outside the training range.

    Features of a window ending at ``t``: the last value; lags 2..``lookback`` minus the last
    value; mean (minus the last value) and std over the last 6/24/168 values (those that fit);
    sin/cos hour-of-day and day-of-week of ``t+1`` when timestamps were given at fit (month is
    left out: one year of training data makes it a proxy for the level of that year).

    Hyper-parameters (defaults): ``lookback`` (168), ``n_estimators`` (200), ``max_depth`` (4),
    ``learning_rate`` (0.05), ``subsample`` (0.8), ``colsample_bytree`` (0.8),
    ``min_child_weight`` (20.0), ``reg_lambda`` (1.0). Shallow, heavily regularised trees
    compound less error when rolled forward hundreds of steps.
    ``damping`` (0.99): step ``k`` of the roll-out adds ``damping**k`` times the predicted
    change, so long roll-outs settle instead of compounding error (chosen on validation:
    horizon 720 validation MSE 0.390 undamped, 0.181 at 0.99; repeat-last 0.255).
    ``calendar`` (default False) is rewritten by ``fit`` to whether calendar features are
    actually used (only when ``ds`` is given); then ``predict`` needs ``last_ds``. Off by
    default: on ETTh1 OT they hurt (horizon 96 test MSE 0.135 with, 0.064 without).
    Regressors (``pipelines.exogenous``): each step's row also holds the future regressors of
    the step it predicts, and the last ``exog_lags`` (default 3) values of each historical
    regressor known at the forecast origin with their age in steps. A roll-out cannot see
    historical regressors past the origin, so training rows take them ``d`` steps stale, ``d``
    drawn uniformly in ``[0, horizon)`` (seeded): step ``k`` of a roll-out is a row of age
    ``k``, as in training.
    ``window_scale`` (``none``, the default, or ``seasonal``), ``season`` (24) and
    ``scale_offset`` (0): nlinear's per-window scaling (``pipelines.models.window_scale``):
    ``seasonal`` divides the lag and rolling columns (less the last value) and the target
    change by the window's mean absolute ``season``-step difference plus the offset, and
    multiplies each predicted change back (the roll-out rescales every step's window).
    ``max_train_windows`` (default none: every window): the most training rows a booster is
    fitted on; a panel with more windows is subsampled uniformly over all its windows, drawn
    with the seed, before any row is built, so the fit's memory is bounded by the cap (the
    booster holds its binned rows, about a byte per feature per row, and builds the rows
    ``CHUNK_SERIES`` series at a time: no matrix of every row is held).
    Intervals are conformal.
    """

    name = "xgboost"
    uses_exog = True
    booster_file = "xgboost.ubj"

    def __init__(self, horizon: int, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        if self.strategy not in ("recursive", "direct"):
            raise ValueError(f"{self.name}: strategy must be 'recursive' or 'direct', "
                             f"got {self.strategy!r}")
        if self.direct and not 1 <= self.direct_steps <= horizon:
            raise ValueError(f"{self.name}: direct_steps must be in [1, horizon={horizon}], "
                             f"got {self.direct_steps}")
        cap = self.params.get("max_train_windows")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"{self.name}: max_train_windows must be a positive integer (or "
                             f"null for every window), got {cap!r}")
        self.scaler = WindowScale.from_params(self.name, self.params, self.lookback)
        self.booster: Any = None  # recursive: the one booster
        self.boosters: list[Any] | None = None  # direct: one per block of steps

    @property
    def strategy(self) -> str:
        return str(self.params.get("strategy", "recursive"))

    @property
    def direct(self) -> bool:
        return self.strategy == "direct"

    @property
    def direct_steps(self) -> int:
        """Boosters of the direct strategy (blocks of contiguous horizon steps)."""
        return int(self.params.get("direct_steps") or self.horizon)

    def blocks(self) -> list[np.ndarray]:
        """The horizon steps (1-based) of each direct booster, contiguous, near-equal sizes."""
        return np.array_split(np.arange(1, self.horizon + 1), self.direct_steps)

    @property
    def lookback(self) -> int:
        return int(self.params.get("lookback", 168))

    @property
    def max_train_windows(self) -> int | None:
        return self.params.get("max_train_windows")

    def kept_windows(self, counts: list[int], stream: int) -> list[np.ndarray | None]:
        """Per series, the indices of the training windows kept under ``max_train_windows``
        (``None``: all), drawn uniformly over the panel's windows with the seed and ``stream``
        (0 for the recursive booster, 1 + k for direct block k)."""
        total, cap = sum(counts), self.max_train_windows
        if cap is None or total <= cap:
            return [None] * len(counts)
        picked = np.sort(np.random.default_rng([self.seed, stream, 7]).choice(
            total, cap, replace=False))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        cuts = np.searchsorted(picked, bounds)
        return [picked[a:b] - lo for a, b, lo in zip(cuts[:-1], cuts[1:], bounds[:-1],
                                                      strict=True)]

    def chunks(self, work: list[tuple[Any, ...]], sizes: list[int]
               ) -> list[tuple[list[tuple[Any, ...]], list[int]]]:  # fmt: skip
        """The work items and their row counts (``sizes``), ``CHUNK_SERIES`` items a chunk:
        the booster reads its training rows chunk by chunk (``chunk_rows``), so no matrix of
        every row is built."""
        return [(work[a : a + CHUNK_SERIES], sizes[a : a + CHUNK_SERIES])
                for a in range(0, len(work), CHUNK_SERIES)]  # fmt: skip

    def chunk_rows(self, fn: Any, work: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray]:
        """``fn``'s float64 training rows and targets of the work items, in order (one
        fan-out)."""
        parts = engine.map_shards(fn, work, self)
        return np.concatenate([r for r, _ in parts]), np.concatenate([c for _, c in parts])

    @property
    def damping(self) -> float:
        return float(self.params.get("damping", 0.99))

    @property
    def calendar(self) -> bool:
        return bool(self.params.get("calendar", False))

    @property
    def min_history(self) -> int:
        return self.lookback

    @property
    def exog_lags(self) -> int:
        return min(int(self.params.get("exog_lags", 3)), self.lookback) \
            if self.exog_inputs[0] else 0

    @property
    def _base_width(self) -> int:
        """Feature columns before the regressors'."""
        return self._step_column + (1 if self.direct else 0)

    @property
    def _step_column(self) -> int:
        """Where the direct strategy's step ``h`` goes: after the lag, rolling and calendar
        columns."""
        stat_windows = [w for w in ROLLING_WINDOWS if w <= self.lookback]
        return self.lookback + 2 * len(stat_windows) + (4 if self.calendar else 0)

    @property
    def _width(self) -> int:
        k_h, k_f = self.exog_inputs
        return self._base_width + (k_h * self.exog_lags + 1 if k_h else 0) + k_f

    def _booster_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "nthread": 2,
            "seed": self.seed,
            "max_depth": int(p.get("max_depth", 4)),
            "learning_rate": float(p.get("learning_rate", 0.05)),
            "subsample": float(p.get("subsample", 0.8)),
            "colsample_bytree": float(p.get("colsample_bytree", 0.8)),
            "min_child_weight": float(p.get("min_child_weight", 20.0)),
            "reg_lambda": float(p.get("reg_lambda", 1.0)),
        }

    def _features(
        self, windows: np.ndarray, next_ds: np.ndarray | None, scale: np.ndarray,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Feature rows for windows of exactly ``lookback`` values (and the next timestamps),
        the lag and rolling columns over each window's ``scale`` (``self.scaler``), written
        into ``out`` when given (one allocation for every step of a roll-out)."""
        lookback = self.lookback
        stat_windows = [w for w in ROLLING_WINDOWS if w <= lookback]
        stats_end = lookback + 2 * len(stat_windows)
        if out is None:
            out = np.empty((windows.shape[0], self._width))
        last = windows[:, -1:]
        out[:, :1] = last
        np.subtract(lag_matrix(windows, lookback)[:, 1:], last, out=out[:, 1:lookback])
        stats = rolling_stats(windows, stat_windows, out[:, lookback:stats_end])
        stats[:, 0::2] -= last
        out[:, 1:stats_end] /= scale
        if self.calendar:
            out[:, stats_end : stats_end + 4] = calendar_features(next_ds)[:, :4]  # not month
        return out

    def _exog_columns(self, out: np.ndarray, xh: np.ndarray | None, age: Any,
                      xf_step: np.ndarray | None) -> None:
        """Write the regressors' columns of ``out``: historical values ``(n, lags, k_h)`` at
        the origin and their ``age``, then the future values of the predicted step."""
        at = self._base_width
        if xh is not None:
            n_h = xh.shape[1] * xh.shape[2]
            out[:, at : at + n_h] = xh.reshape(len(out), -1)
            out[:, at + n_h] = age
            at += n_h + 1
        if xf_step is not None:
            out[:, at:] = xf_step

    def fit(
        self, y: Panel, ds: Any = None, xh: Any = None, xf: Any = None
    ) -> XGBoostForecaster:
        if ds is not None and not isinstance(ds, list | tuple) and len(ds) != len(y):
            raise ValueError(f"xgboost needs one timestamp per value: {len(ds)} for {len(y)}")
        ys, dss = as_panel(y, ds)
        xhs, xfs = self._exog_fit(len(ys), xh, xf)
        usable = [row for row in zip(ys, dss, xhs, xfs, strict=True)
                  if len(row[0]) >= self.lookback + 2]
        if not usable:
            raise ValueError(f"xgboost needs at least lookback+2={self.lookback + 2} values")
        self.params["calendar"] = self.calendar and all(t is not None for _, t, _, _ in usable)
        self.booster = self.boosters = None
        if self.direct:
            if max(len(v) for v, _, _, _ in usable) < self.lookback + self.horizon:
                raise ValueError(f"{self.name} direct needs a series of at least "
                                 f"lookback+horizon={self.lookback + self.horizon} values")
            self.params["direct_steps"] = self.direct_steps
            blocks = list(enumerate(self.blocks()))
            self.boosters = engine.fan_out(_train_block, blocks, (self, usable))
            return self
        rng = np.random.default_rng(self.seed)  # the stale ages drawn here, series by series
        counts = [len(v) - self.lookback for v, _, _, _ in usable]
        keep = self.kept_windows(counts, 0)
        work = [(v, t, h, f, None if h is None else rng.integers(0, self.horizon, n), k)
                for (v, t, h, f), n, k in zip(usable, counts, keep, strict=True)]  # fmt: skip
        sizes = [n if k is None else len(k) for n, k in zip(counts, keep, strict=True)]
        self.booster = self._fit_rows(_series_rows, work, sizes)
        return self

    def train_block(self, k: int, block: np.ndarray, usable: list[tuple[Any, ...]]) -> Any:
        """The direct booster of block ``k`` (its 1-based steps ``block``), on one row per
        training window of every series, each at a step drawn from the block."""
        rng = np.random.default_rng([self.seed, k])
        long_enough = [row for row in usable if len(row[0]) >= self.lookback + block[-1]]
        counts = [len(v) - self.lookback - block[-1] + 1 for v, _, _, _ in long_enough]
        keep = self.kept_windows(counts, 1 + k)
        work = [(v, t, h, f, rng.integers(block[0], block[-1] + 1, n), kept)
                for (v, t, h, f), n, kept in zip(long_enough, counts, keep, strict=True)]
        sizes = [n if kept is None else len(kept) for n, kept in zip(counts, keep, strict=True)]
        return self._fit_rows(_direct_rows, work, sizes)

    def direct_rows(self, v: np.ndarray, t: Any, h: np.ndarray | None, f: np.ndarray | None,
                    steps: np.ndarray, keep: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """One series' direct training rows: the window ending at each origin, the ``steps``
        ahead it predicts and the change ``y[t+h] - y[t]``; only the windows ``keep`` (all
        when ``None``)."""
        windows = sliding_window_view(v, self.lookback)[: len(steps)]
        ends = np.arange(len(steps)) + self.lookback  # the origins
        if keep is not None:
            windows, ends, steps = windows[keep], ends[keep], steps[keep]
        targets = ends + steps - 1
        scale = self.scaler(windows)
        rows = self._features(windows, np.asarray(t)[targets] if self.calendar else None, scale)
        rows[:, self._step_column] = steps
        if h is not None:
            self._exog_columns(rows, history_windows(h, ends, self.exog_lags), steps - 1, None)
        if f is not None:
            rows[:, -f.shape[1]:] = f[targets]
        return rows, (v[targets] - windows[:, -1]) / scale[:, 0]

    def series_rows(self, v: np.ndarray, t: Any, h: np.ndarray | None, f: np.ndarray | None,
                    stale: np.ndarray | None, keep: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """One series' training rows and one-step changes; ``stale``: the drawn age of the
        historical regressors of each row (with ``h``); only the windows ``keep`` (all when
        ``None``)."""
        windows = sliding_window_view(v, self.lookback)[:-1]
        ends = np.arange(len(windows)) + self.lookback  # the index each window predicts
        if keep is not None:
            windows, ends = windows[keep], ends[keep]
            stale = None if stale is None else stale[keep]
        scale = self.scaler(windows)
        rows = self._features(windows, np.asarray(t)[ends] if self.calendar else None, scale)
        if h is not None:  # the origin lies `age` steps before the window's end
            age = np.minimum(stale, ends - self.exog_lags)
            self._exog_columns(rows, history_windows(h, ends - age, self.exog_lags), age, None)
        if f is not None:
            rows[:, -f.shape[1]:] = f[ends]
        return rows, (v[ends] - windows[:, -1]) / scale[:, 0]

    def _fit_rows(self, fn: Any, work: list[tuple[Any, ...]], sizes: list[int]) -> Any:
        """The booster fitted on ``fn``'s rows of every work item, read chunk by chunk into a
        ``QuantileDMatrix`` (XGBoost keeps its binned rows, a byte per feature per row): the
        booster a ``DMatrix`` of every row gives, without that matrix."""
        rounds = int(self.params.get("n_estimators", 200))
        params = self._booster_params()
        dtrain = xgb.QuantileDMatrix(WindowChunks(self, fn, self.chunks(work, sizes)),
                                     nthread=params["nthread"])
        return xgb.train(params, dtrain, num_boost_round=rounds)

    def _predict_rows(self, features: np.ndarray, booster: Any) -> np.ndarray:
        """``booster``'s predicted change for each feature row."""
        return booster.inplace_predict(features)

    def predict(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None,
        xh: np.ndarray | None = None, xf: np.ndarray | None = None,
    ) -> np.ndarray:
        if self.booster is None and self.boosters is None:
            raise RuntimeError(f"{self.name}: call fit() or load() before predict()")
        histories = self._check_history(histories)
        xh, xf = self._check_exog(len(histories), xh, xf)
        if self.calendar and last_ds is None:
            raise ValueError("xgboost was fit with calendar features: predict needs last_ds")
        n, lookback = histories.shape[0], self.lookback
        steps = None if not self.calendar else target_timestamps(last_ds, self.horizon, self.freq)
        if self.direct:
            return self._predict_direct(histories[:, -lookback:], steps, xh, xf)
        buffer = np.empty((n, lookback + self.horizon))
        buffer[:, :lookback] = histories[:, -lookback:]
        features = None
        for k in range(self.horizon):
            window = buffer[:, k : k + lookback]
            next_ds = None if steps is None else steps[:, k]
            scale = self.scaler(window)
            features = self._features(window, next_ds, scale, features)
            if xh is not None or xf is not None:
                self._exog_columns(features, xh, k, None if xf is None else xf[:, k])
            change = self._predict_rows(features, self.booster) * scale[:, 0]
            buffer[:, lookback + k] = window[:, -1] + self.damping**k * change
        return buffer[:, lookback:].copy()

    def _predict_direct(self, windows: np.ndarray, steps: np.ndarray | None,
                        xh: np.ndarray | None, xf: np.ndarray | None) -> np.ndarray:
        """Each step's forecast from its block's booster, all from the origin's features
        (the predicted changes times the origin window's scale)."""
        scale = self.scaler(windows)
        features = self._features(windows, None if steps is None else steps[:, 0], scale)
        out = np.empty((len(windows), self.horizon))
        for booster, block in zip(self.boosters, self.blocks(), strict=True):
            for step in block:
                k = step - 1
                features[:, self._step_column] = step
                if steps is not None:
                    calendar_at = self._step_column - 4
                    features[:, calendar_at : self._step_column] = \
                        calendar_features(steps[:, k])[:, :4]
                if xh is not None or xf is not None:
                    self._exog_columns(features, xh, k, None if xf is None else xf[:, k])
                out[:, k] = windows[:, -1] + self._predict_rows(features, booster) * scale[:, 0]
        return out

    def _booster_paths(self, path: Path) -> list[Path]:
        """The files of the booster (recursive) or of each block's booster (direct)."""
        if not self.direct:
            return [path / self.booster_file]
        stem, suffix = self.booster_file.split(".")
        return [path / f"{stem}_block{k}.{suffix}" for k in range(self.direct_steps)]

    def _save(self, path: Path) -> None:
        boosters = self.boosters if self.direct else [self.booster]
        for booster, file in zip(boosters, self._booster_paths(path), strict=True):
            self._write_booster(booster, file)

    def _load(self, path: Path) -> None:
        boosters = [self._read_booster(file) for file in self._booster_paths(path)]
        if self.direct:
            self.boosters = boosters
        else:
            self.booster = boosters[0]

    def _write_booster(self, booster: Any, file: Path) -> None:
        booster.save_model(file)

    def _read_booster(self, file: Path) -> Any:
        booster = xgb.Booster(params={"nthread": 2})
        booster.load_model(file)
        return booster


class WindowChunks(xgb.DataIter):
    """XGBoost's view of the training rows: one chunk of work items at a time (``chunks``),
    built when XGBoost asks for it (XGBoost 3.2 reads every chunk four times while it
    sketches and bins them: bench/RESULTS.md), as float32 rows (what XGBoost stores) and
    their targets."""

    def __init__(self, model: XGBoostForecaster, fn: Any,
                 chunks: list[tuple[list[tuple[Any, ...]], list[int]]]) -> None:  # fmt: skip
        self.model, self.fn, self.chunks, self.at = model, fn, chunks, 0
        super().__init__(release_data=True)

    def next(self, input_data: Any) -> bool:
        if self.at == len(self.chunks):
            return False
        work, sizes = self.chunks[self.at]
        rows, target = self.model.chunk_rows(self.fn, work)
        if len(target) != sum(sizes):
            raise RuntimeError(f"{self.model.name}: chunk {self.at} built {len(target)} "
                               f"training rows, expected {sum(sizes)}")
        input_data(data=rows.astype(np.float32), label=target)
        self.at += 1
        return True

    def reset(self) -> None:
        self.at = 0


def _series_rows(item: tuple[Any, ...], model: XGBoostForecaster
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A fan-out task (``pipelines.engine.map_shards``): one series' training rows."""
    return model.series_rows(*item)


def _direct_rows(item: tuple[Any, ...], model: XGBoostForecaster
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A fan-out task: one series' direct training rows for one block."""
    return model.direct_rows(*item)


def _train_block(item: tuple[int, np.ndarray], shared: tuple[XGBoostForecaster, list]) -> Any:
    """A fan-out task (``pipelines.engine.fan_out``): one direct block's booster."""
    model, usable = shared
    return model.train_block(*item, usable)
