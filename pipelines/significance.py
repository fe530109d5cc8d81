"""Diebold–Mariano test of "the challenger forecasts better than the champion".

The loss differential is ``d_t = L(champion_t) - L(challenger_t)`` (positive when the challenger
does better). Its long-run variance uses the ``h - 1`` autocovariances an ``h``-step forecast
error carries: uniform weights as in Diebold & Mariano (1995) and R's ``forecast::dm.test``, or
Bartlett (Newey–West) weights, which are never negative and are used as a fallback when the
uniform estimate is not positive. The statistic gets the Harvey–Leybourne–Newbold (1997)
small-sample correction and is compared with Student-t on ``n - 1`` degrees of freedom,
one-sided. Plain numpy/scipy: no Airflow or serving import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

Loss = Literal["squared", "absolute"]
Kernel = Literal["uniform", "bartlett"]


class Decision(StrEnum):
    PROMOTE = "promote"
    KEEP = "keep"
    INSUFFICIENT_DATA = "insufficient-data"


@dataclass(frozen=True)
class SignificanceResult:
    """Outcome of one comparison; ``statistic``/``p_value`` are NaN when no test was run."""

    decision: Decision
    statistic: float
    p_value: float
    n: int
    dropped: int
    mean_loss_diff: float
    h: int
    alpha: float
    reason: str

    @property
    def promote(self) -> bool:
        return self.decision is Decision.PROMOTE

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields (for XCom, MLflow tags, logs)."""
        return asdict(self) | {"decision": self.decision.value}


def loss_differential(
    champion_errors: ArrayLike, challenger_errors: ArrayLike, loss: Loss = "squared"
) -> tuple[np.ndarray, int]:
    """``L(champion) - L(challenger)`` over the pairs where both errors are finite, and how
    many pairs were dropped."""
    champ = np.asarray(champion_errors, dtype=float).ravel()
    chall = np.asarray(challenger_errors, dtype=float).ravel()
    if champ.shape != chall.shape:
        raise ValueError(
            f"champion and challenger errors must pair up: {champ.size} vs {chall.size} values"
        )
    keep = np.isfinite(champ) & np.isfinite(chall)
    if loss == "squared":
        d = champ[keep] ** 2 - chall[keep] ** 2
    elif loss == "absolute":
        d = np.abs(champ[keep]) - np.abs(chall[keep])
    else:
        raise ValueError(f"unknown loss {loss!r}: use 'squared' or 'absolute'")
    return d, int((~keep).sum())


def long_run_variance(d: np.ndarray, h: int, kernel: Kernel = "uniform") -> float:
    """``gamma_0 + 2 * sum_k w_k gamma_k`` over lags ``1..h-1`` (autocovariances divided by n)."""
    n = d.size
    centred = d - d.mean()
    gammas = [float(centred[k:] @ centred[: n - k]) / n for k in range(h)]
    if kernel == "uniform":
        weights = np.ones(h - 1)
    elif kernel == "bartlett":
        weights = 1.0 - np.arange(1, h) / h
    else:
        raise ValueError(f"unknown kernel {kernel!r}: use 'uniform' or 'bartlett'")
    return gammas[0] + 2.0 * float(weights @ np.asarray(gammas[1:]))


def diebold_mariano(
    champion_errors: ArrayLike,
    challenger_errors: ArrayLike,
    *,
    h: int = 1,
    loss: Loss = "squared",
    alpha: float = 0.05,
    min_samples: int = 30,
    kernel: Kernel = "uniform",
) -> SignificanceResult:
    """Test whether the challenger's forecast errors are significantly smaller.

    ``champion_errors`` and ``challenger_errors`` are paired errors (actual - forecast) on the
    same targets; pairs with a NaN on either side are dropped. ``h`` is the forecast horizon
    of these errors. The decision is ``promote`` only when the one-sided p-value is below
    ``alpha``; fewer than ``min_samples`` (and than ``2 * h``) pairs give ``insufficient-data``;
    a loss differential without variance (identical errors) gives ``keep``.
    """
    if h < 1:
        raise ValueError(f"h must be >= 1, got {h}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    d, dropped = loss_differential(champion_errors, challenger_errors, loss)
    n = d.size
    mean_diff = float(d.mean()) if n else float("nan")
    dropped_note = f"; dropped {dropped} pair(s) with NaN" if dropped else ""

    def result(decision: Decision, reason: str, stat: float = np.nan, p: float = np.nan):
        return SignificanceResult(
            decision, float(stat), float(p), n, dropped, mean_diff, h, alpha, reason + dropped_note
        )

    min_n = max(min_samples, 2 * h, 2)
    hln = (n + 1 - 2 * h + h * (h - 1) / n) / n if n else 0.0
    if n < min_n or hln <= 0:
        return result(
            Decision.INSUFFICIENT_DATA, f"{n} paired errors, at least {min_n} needed (h={h})"
        )
    scale = float(np.mean(d**2))
    if scale == 0.0 or float(np.ptp(d)) <= 1e-12 * np.sqrt(scale):
        return result(
            Decision.KEEP,
            f"loss differential is constant ({mean_diff:.6g}) over {n} pairs: no variance, "
            "no test, champion kept",
        )
    variance = long_run_variance(d, h, kernel)
    used = kernel
    if variance <= 0:
        variance, used = long_run_variance(d, h, "bartlett"), "bartlett"
    dm = mean_diff / np.sqrt(variance / n)
    statistic = dm * np.sqrt(hln)
    p_value = float(stats.t.sf(statistic, df=n - 1))
    where = f"DM={statistic:.3f}, one-sided p={p_value:.4g}, n={n}, h={h}, {loss} loss"
    if used != kernel:
        where += ", Bartlett variance (uniform estimate was not positive)"
    if p_value < alpha:
        return result(
            Decision.PROMOTE,
            f"challenger significantly better ({where} < alpha={alpha}; "
            f"mean loss reduction {mean_diff:.6g})",
            statistic,
            p_value,
        )
    better = "better" if mean_diff > 0 else "worse or equal"
    return result(
        Decision.KEEP,
        f"challenger {better} on average but not significantly ({where} >= alpha={alpha})",
        statistic,
        p_value,
    )
