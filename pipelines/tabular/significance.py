"""Paired tests of "the challenger predicts better than the champion" on the same test rows,
for the promotion gate of tabular models, with the forecasting gate's outcomes
(``pipelines.significance.Decision``: ``promote``, ``keep``, ``insufficient-data``).

- Classification (and anomaly detection with labels): exact one-sided McNemar test on the
  rows where exactly one model is right. ``b`` = champion wrong and challenger right, ``c`` =
  the reverse; under "no difference" ``b ~ Binomial(b + c, 1/2)``, and ``p = P(X >= b)``.
  The statistic reported is ``(b - c) / sqrt(b + c)``.
- Regression: the squared-error differential ``e_champion² - e_challenger²`` through
  ``pipelines.significance.diebold_mariano`` with ``h = 1``, which there is the one-sided
  paired t-test (``mean(d) / (sd(d) / sqrt(n))`` on ``n - 1`` degrees of freedom).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from pipelines.significance import Decision, SignificanceResult, diebold_mariano


def mcnemar(
    y_true: ArrayLike,
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    *,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> SignificanceResult:
    """Exact one-sided McNemar test of "the challenger's labels are right more often".
    ``mean_loss_diff`` is the drop in error rate (``(b - c) / n``)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y, champ, chall = (np.asarray(a, dtype=object).ravel()
                       for a in (y_true, champion_pred, challenger_pred))
    if not y.size == champ.size == chall.size:
        raise ValueError(f"labels and predictions must pair up: {y.size}, {champ.size} and "
                         f"{chall.size} values")
    n = int(y.size)
    champ_right, chall_right = champ == y, chall == y
    b = int((~champ_right & chall_right).sum())
    c = int((champ_right & ~chall_right).sum())
    diff = (b - c) / n if n else float("nan")

    def result(decision: Decision, reason: str, stat: float = np.nan,
               p: float = np.nan) -> SignificanceResult:
        return SignificanceResult(decision, float(stat), float(p), n, 0, diff, 1, alpha, reason)

    if n < max(min_samples, 1):
        return result(Decision.INSUFFICIENT_DATA,
                      f"{n} labelled test rows, at least {min_samples} needed")
    if b + c == 0:
        return result(Decision.KEEP, f"the two models agree on all {n} rows: no test, "
                                     "champion kept")
    statistic = (b - c) / np.sqrt(b + c)
    p_value = float(stats.binom.sf(b - 1, b + c, 0.5))
    where = (f"McNemar exact one-sided p={p_value:.4g}, challenger alone right on {b} rows, "
             f"champion alone on {c}, n={n}")
    if p_value < alpha:
        return result(Decision.PROMOTE, f"challenger significantly better ({where} < "
                                        f"alpha={alpha}; error rate down {diff:.4g})",
                      statistic, p_value)
    better = "better" if b > c else "worse or equal"
    return result(Decision.KEEP, f"challenger {better} but not significantly ({where} >= "
                                 f"alpha={alpha})", statistic, p_value)


def paired_squared_errors(
    y_true: ArrayLike,
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    *,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> SignificanceResult:
    """One-sided paired t-test on squared errors (Diebold–Mariano at ``h = 1``)."""
    y = np.asarray(y_true, dtype=float).ravel()
    champ = y - np.asarray(champion_pred, dtype=float).ravel()
    chall = y - np.asarray(challenger_pred, dtype=float).ravel()
    return diebold_mariano(champ, chall, h=1, loss="squared", alpha=alpha,
                           min_samples=min_samples)


def compare_on_test(
    task: str,
    y_true: ArrayLike,
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    *,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> SignificanceResult:
    """The test fit for ``task`` on the test split's labels and both versions' predictions."""
    if task in ("classification", "anomaly"):
        return mcnemar(y_true, champion_pred, challenger_pred, alpha=alpha,
                       min_samples=min_samples)
    if task == "regression":
        return paired_squared_errors(y_true, champion_pred, challenger_pred, alpha=alpha,
                                     min_samples=min_samples)
    raise ValueError(f"task: {task!r} has no tabular promotion test (classification, "
                     "regression, anomaly)")
