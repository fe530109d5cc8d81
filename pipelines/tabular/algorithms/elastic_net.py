"""ElasticNet regression (scikit-learn)."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import ElasticNet

    return ElasticNet(**{"random_state": seed, **params})
