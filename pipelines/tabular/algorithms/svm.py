"""Support vector classifier (scikit-learn SVC), probabilities calibrated by sigmoid
(``CalibratedClassifierCV(ensemble=False)``, what scikit-learn 1.9 recommends over
``SVC(probability=True)``)."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    return CalibratedClassifierCV(SVC(**{"random_state": seed, **params}), ensemble=False)
