"""Support vector regression (scikit-learn SVR)."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.svm import SVR

    return SVR(**params)
