"""Quality reports of labelled tabular records against hand-computed numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from monitoring.tabular_quality import labelled_quality

ARGS = {"metadata": {"model": "m", "version": "1"}, "timestamp": None}


def test_regression_quality_by_hand():
    # labels 1..4, predictions 1, 2, 3, 5 (ten times): errors 0, 0, 0, 1
    records = pd.DataFrame({"label": [1.0, 2.0, 3.0, 4.0] * 10,
                            "prediction": [1.0, 2.0, 3.0, 5.0] * 10, "variant": "champion"})
    out = labelled_quality("regression", records, None, 30, ARGS)
    # MAE 1/4; RMSE sqrt(1/4); R² = 1 - 10 / (10 * (2.25 + 0.25 + 0.25 + 2.25)) = 0.8
    assert out.metrics["champion"] == pytest.approx(
        {"labels": 40.0, "mae": 0.25, "rmse": 0.5, "r2": 0.8})
    assert set(out.snapshots) == {"quality_champion"} and out.notes == []


def test_multiclass_labels_unknown_classes_and_too_few():
    # three classes; 30 of the 36 predictions right; two labels (7.0) no class of the model
    labels = [0.0, 1.0, 2.0] * 12 + [7.0, 7.0]
    predicted = [0, 1, 2] * 10 + [1, 2, 0] * 2 + [0, 0]
    records = pd.DataFrame({"label": labels, "prediction": predicted,
                            "variant": "challenger"})
    records = pd.concat([records, pd.DataFrame({"label": [1.0] * 5, "prediction": [1] * 5,
                                                "variant": "champion"})])
    out = labelled_quality("classification", records, [0, 1, 2], 30, ARGS)
    assert out.metrics["challenger"]["labels"] == 36.0
    assert out.metrics["challenger"]["accuracy"] == pytest.approx(30 / 36)
    assert out.metrics["champion"] == {"labels": 5.0}
    assert set(out.snapshots) == {"quality_challenger"}
    assert "challenger: 2 label(s) not among the classes [0, 1, 2] left out" in out.notes
    assert ("quality of champion not reported: 5 labelled records, at least 30 needed"
            in out.notes)


def test_no_labels_and_anomaly_detectors_say_so():
    records = pd.DataFrame({"label": [math.nan] * 3, "prediction": [1, 0, 1],
                            "variant": "champion"})
    none = labelled_quality("classification", records, [0, 1], 30, ARGS)
    assert none.notes == ["quality not reported: no labels have come back through /feedback"]
    assert none.metrics == {} and none.snapshots == {}
    anomaly = labelled_quality("anomaly", records, None, 30, ARGS)
    assert anomaly.notes == ["quality reports cover classification and regression, not anomaly"]
