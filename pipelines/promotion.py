"""Promotion evidence: champion vs challenger on the same backtest window, plus live A/B errors.

The backtest forecasts from every origin of a recent window with each model's own bundle
(preprocessor included) and compares the per-origin mean absolute error over the common
horizon with the Diebold–Mariano test (``h`` = that horizon, since stride-1 windows overlap).
On a panel (several series) each series' errors are divided by its seasonal-naive scale (the
MASE denominator, from the window's values before the first origin), and the loss at each
origin is the mean over series of those scaled errors, so large series do not dominate;
origins are aligned from the end of each series.
Live evidence is the same test on paired live errors from the prediction log. A challenger is
promoted only when the backtest says it is significantly better and live evidence, where
there is enough of it, agrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines import panel
from pipelines.bundle import ForecastBundle
from pipelines.evaluation import actual_windows, mase_scale
from pipelines.exogenous import future_matrix
from pipelines.significance import Decision, SignificanceResult, diebold_mariano


@dataclass(frozen=True)
class PromotionPolicy:
    """Knobs of the decision (DAG params / config)."""

    alpha: float = 0.05
    min_samples: int = 30
    backtest_rows: int = 720
    loss: str = "absolute"


@dataclass
class PromotionEvidence:
    promote: bool
    reason: str
    backtest: SignificanceResult
    live: SignificanceResult | None = None
    backtest_mae: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (XCom, tags): statistics that were not computed are None, not NaN."""
        return {
            "promote": self.promote,
            "reason": self.reason,
            "backtest": _finite(self.backtest.as_dict()),
            "live": None if self.live is None else _finite(self.live.as_dict()),
            "backtest_mae": _finite(self.backtest_mae),
        }


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in values.items()
    }


def backtest_errors(
    bundle: ForecastBundle,
    ds: np.ndarray,
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    series_id: str | None = None,
    frame: pd.DataFrame | None = None,
) -> np.ndarray:
    """Forecast errors ``actual - forecast`` in original units, shape ``(n_origins, horizon)``,
    of series ``series_id`` (needed when the bundle was trained on several series). A model
    with regressors reads them from ``frame`` (that series' validated rows, their columns)."""
    y = np.asarray(y, dtype=float)
    ids = None if series_id is None else [series_id] * len(y)
    scaled = bundle.preprocessor.transform_target(y, ids)
    uid = series_id if series_id is not None else bundle.series_ids[0]
    xh, xf = _regressors(bundle, frame, ds, uid)
    pred = panel.forecast(bundle.forecaster, [scaled], [ds], [origins], [uid], xh, xf)[0]
    inverse = bundle.preprocessor.inverse_transform_target(
        pred[:, :horizon], None if ids is None else ids[: len(pred)]
    )
    return actual_windows(y, origins, horizon) - inverse


def _regressors(
    bundle: ForecastBundle, frame: pd.DataFrame | None, ds: np.ndarray, uid: str
) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """The scaled regressors of one series' rows for ``panel.forecast`` (None without)."""
    spec = bundle.exogenous
    if not spec:
        return None, None
    if frame is None:
        raise ValueError(f"{bundle.forecaster.name} uses regressors {spec.to_dict()}: the "
                         "backtest needs the rows with their columns")
    columns = [*spec.historical, *spec.future]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"backtest: regressor columns {missing} are not in the data")
    x = bundle.preprocessor.transform(frame[["ds", *columns]].assign(unique_id=uid))
    xh = [x[list(spec.historical)].to_numpy(float)] if spec.historical else None
    return xh, [future_matrix(spec, x[list(spec.future)].to_numpy(float), ds)]


def season_of_freq(freq: str) -> int:
    """The seasonal lag of the MASE scale for a frequency (1 when it has no usual season)."""
    from pipelines.workflow import SEASON_OF_FREQ

    return SEASON_OF_FREQ.get(freq, 1)


def series_scales(series: pd.DataFrame, season: int, before: dict[str, int]) -> dict[str, float]:
    """Each series' MASE denominator from its first ``before[uid]`` values (seasonal naive)."""
    out = {}
    for uid, group in series.groupby("unique_id", sort=False):
        head = group["y"].to_numpy(float)[: before.get(str(uid), len(group))]
        try:
            out[str(uid)] = mase_scale(head, season)
        except ValueError:  # too short or constant: this series cannot be scaled
            continue
    return out


def compare_backtest(
    champion: ForecastBundle,
    challenger: ForecastBundle,
    series: pd.DataFrame,
    policy: PromotionPolicy,
) -> tuple[SignificanceResult, dict[str, float]]:
    """Both models on the last ``policy.backtest_rows`` rows of each series of ``series``
    (``unique_id`` (optional for one series), ``ds``, ``y``).

    Models of one series: per-origin MAE in original units. Panel models: per-origin mean
    over series of each series' MAE divided by its MASE scale (``backtest_mae`` then holds
    mean MASE); only series both models know take part, and at least one must."""
    horizon = min(champion.horizon, challenger.horizon)
    history = max(champion.min_history, challenger.min_history)
    if "unique_id" not in series or len(champion.series_ids) == 1 == len(challenger.series_ids):
        champ, chall = _series_losses(champion, challenger, series, history, horizon, policy)
    else:
        champ, chall = _panel_losses(champion, challenger, series, history, horizon, policy)
    result = diebold_mariano(
        champ,
        chall,
        h=horizon,
        loss=policy.loss,
        alpha=policy.alpha,
        min_samples=policy.min_samples,
    )
    return result, {"champion": float(champ.mean()), "challenger": float(chall.mean())}


def _origins(n: int, history: int, horizon: int, policy: PromotionPolicy, what: str) -> np.ndarray:
    origins = np.arange(max(history, n - policy.backtest_rows), n - horizon + 1)
    if origins.size == 0:
        raise ValueError(
            f"backtest needs more than {history + horizon} rows (history {history} + horizon "
            f"{horizon}); {what} has {n}"
        )
    return origins


def _series_losses(
    champion: ForecastBundle,
    challenger: ForecastBundle,
    series: pd.DataFrame,
    history: int,
    horizon: int,
    policy: PromotionPolicy,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-origin MAE of each model (of one series) on the series, in original units."""
    ds = pd.to_datetime(series["ds"]).to_numpy("datetime64[ns]")
    y = series["y"].to_numpy(float)
    origins = _origins(len(y), history, horizon, policy, "the series")
    return tuple(  # type: ignore[return-value]
        np.abs(backtest_errors(b, ds, y, origins, horizon, frame=series)).mean(axis=1)
        for b in (champion, challenger)
    )


def _panel_losses(
    champion: ForecastBundle,
    challenger: ForecastBundle,
    series: pd.DataFrame,
    history: int,
    horizon: int,
    policy: PromotionPolicy,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-origin mean over series of scaled MAE (origins aligned from each series' end)."""
    known = set(champion.series_ids) & set(challenger.series_ids)
    groups = {
        str(uid): g for uid, g in series.groupby("unique_id", sort=False) if str(uid) in known
    }
    if not groups:
        raise ValueError(
            f"backtest: none of the {series['unique_id'].nunique()} series in the window is "
            f"known to both models (e.g. {sorted(known)[:3]})"
        )
    origins = {
        uid: _origins(len(g), history, horizon, policy, f"series {uid!r}")
        for uid, g in groups.items()
    }
    season = season_of_freq(champion.freq)
    scales = series_scales(
        pd.concat(groups.values()), season, {u: int(o[0]) for u, o in origins.items()}
    )
    if not scales:
        raise ValueError("backtest: no series has a non-constant history to scale errors by")
    count = min(len(origins[uid]) for uid in scales)
    losses = []
    for bundle in (champion, challenger):
        per_series = []
        for uid, scale in scales.items():
            g = groups[uid]
            errors = backtest_errors(
                bundle,
                pd.to_datetime(g["ds"]).to_numpy("datetime64[ns]"),
                g["y"].to_numpy(float),
                origins[uid][-count:],
                horizon,
                uid,
                g,
            )
            per_series.append(np.abs(errors).mean(axis=1) / scale)
        losses.append(np.mean(per_series, axis=0))
    return losses[0], losses[1]


def live_evidence(
    errors: pd.DataFrame, policy: PromotionPolicy, scales: dict[str, float] | None = None
) -> SignificanceResult | None:
    """DM test on live errors paired by (series, target timestamp, step) across variants.

    ``errors`` has columns ``variant`` (champion/challenger), ``series_id``, ``ds``, ``step``
    and ``error`` (actual - forecast). With ``scales`` (a panel) each series' errors are
    divided by its scale and series without one are left out. None when either variant has
    no errors at all.
    """
    if scales is not None and not errors.empty:
        scale = errors["series_id"].astype(str).map(scales)
        errors = errors.assign(error=errors["error"] / scale)[scale.notna().to_numpy()]
    if errors.empty or set(errors["variant"]) < {"champion", "challenger"}:
        return None
    keyed = errors.pivot_table(
        index=["series_id", "ds", "step"], columns="variant", values="error", aggfunc="mean"
    ).dropna()
    return diebold_mariano(
        keyed["champion"].to_numpy(),
        keyed["challenger"].to_numpy(),
        h=1,
        loss=policy.loss,
        alpha=policy.alpha,
        min_samples=policy.min_samples,
    )


def decide(
    backtest: SignificanceResult,
    live: SignificanceResult | None,
    backtest_mae: dict[str, float],
) -> PromotionEvidence:
    """Promote only on significant backtest evidence that live evidence does not contradict."""
    if not backtest.promote:
        reason = f"backtest: {backtest.reason}"
        return PromotionEvidence(False, reason, backtest, live, backtest_mae)
    if live is None or live.decision is Decision.INSUFFICIENT_DATA:
        note = "no live A/B errors yet" if live is None else f"live: {live.reason}"
        reason = f"backtest: {backtest.reason}; {note} (backtest decides)"
        return PromotionEvidence(True, reason, backtest, live, backtest_mae)
    if not live.promote:
        reason = f"backtest favours the challenger but live A/B does not: {live.reason}"
        return PromotionEvidence(False, reason, backtest, live, backtest_mae)
    reason = f"backtest: {backtest.reason}; live: {live.reason}"
    return PromotionEvidence(True, reason, backtest, live, backtest_mae)
