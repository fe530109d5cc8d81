"""Promotion evidence: champion vs challenger on the same backtest window, plus live A/B errors.

The backtest forecasts from every origin of a recent window with each model's own bundle
(preprocessor included) and compares the per-origin mean absolute error over the common
horizon with the Diebold–Mariano test (``h`` = that horizon, since stride-1 windows overlap).
Live evidence is the same test on paired live errors from the prediction log. A challenger is
promoted only when the backtest says it is significantly better and live evidence, where
there is enough of it, agrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.bundle import ForecastBundle
from pipelines.evaluation import actual_windows
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
    bundle: ForecastBundle, ds: np.ndarray, y: np.ndarray, origins: np.ndarray, horizon: int
) -> np.ndarray:
    """Forecast errors ``actual - forecast`` in original units, shape ``(n_origins, horizon)``."""
    scaled = bundle.preprocessor.transform_target(np.asarray(y, dtype=float))
    pred = bundle.forecaster.forecast_origins(scaled, origins, ds)[:, :horizon]
    return actual_windows(y, origins, horizon) - bundle.preprocessor.inverse_transform_target(pred)


def compare_backtest(
    champion: ForecastBundle,
    challenger: ForecastBundle,
    series: pd.DataFrame,
    policy: PromotionPolicy,
) -> tuple[SignificanceResult, dict[str, float]]:
    """Both models on the last ``policy.backtest_rows`` rows of ``series`` (``ds``, ``y``)."""
    horizon = min(champion.horizon, challenger.horizon)
    ds = pd.to_datetime(series["ds"]).to_numpy("datetime64[ns]")
    y = series["y"].to_numpy(float)
    history = max(champion.min_history, challenger.min_history)
    first = max(history, len(y) - policy.backtest_rows)
    origins = np.arange(first, len(y) - horizon + 1)
    if origins.size == 0:
        raise ValueError(
            f"backtest needs more than {history + horizon} rows (history {history} + horizon "
            f"{horizon}); the series has {len(y)}"
        )
    champ = np.abs(backtest_errors(champion, ds, y, origins, horizon)).mean(axis=1)
    chall = np.abs(backtest_errors(challenger, ds, y, origins, horizon)).mean(axis=1)
    result = diebold_mariano(
        champ,
        chall,
        h=horizon,
        loss=policy.loss,
        alpha=policy.alpha,
        min_samples=policy.min_samples,
    )
    return result, {"champion": float(champ.mean()), "challenger": float(chall.mean())}


def live_evidence(errors: pd.DataFrame, policy: PromotionPolicy) -> SignificanceResult | None:
    """DM test on live errors paired by (series, target timestamp, step) across variants.

    ``errors`` has columns ``variant`` (champion/challenger), ``series_id``, ``ds``, ``step``
    and ``error`` (actual - forecast). None when either variant has no errors at all.
    """
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
