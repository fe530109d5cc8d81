"""The tabular bundle: the fitted scikit-learn pipeline (preprocessing + model) and what
serving needs to check and answer a request, saved as one folder.

Layout::

    bundle/
      tabular.json    task, algorithm, features (numeric, categorical with known values),
                      classes, decision threshold, target, lineage
      model.joblib    sklearn Pipeline: preprocess -> model (takes the raw feature frame)
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.validate import _listing


class TabularInputError(ValueError):
    """A request the model cannot answer; ``field`` names the offending feature."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@contextlib.contextmanager
def _stock_pickle() -> Iterator[None]:
    """joblib with pickle's own reducers while it holds. joblib pickles with a copy of the
    pure-Python ``Pickler``'s dispatch table, which dill (imported in Airflow's task processes)
    extends with its reducers on import; a pipeline pickled so (a ColumnTransformer's
    ``slice``s) needs dill to load, and serving has no dill."""
    import pickle

    from joblib.numpy_pickle import NumpyPickler

    dill = sys.modules.get("dill")
    if dill is not None:
        dill.extend(False)  # pickle's own entries back
    saved = NumpyPickler.dispatch
    NumpyPickler.dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        NumpyPickler.dispatch = saved
        if dill is not None:
            dill.extend(True)


@dataclass
class TabularBundle:
    pipeline: Any
    meta: dict[str, Any]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def features(self) -> list[str]:
        return self.meta["numeric"] + self.meta["categorical"]

    def save(self, path: str | Path) -> Path:
        import joblib

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "tabular.json").write_text(json.dumps(self.meta, indent=2, default=str))
        with _stock_pickle():
            joblib.dump(self.pipeline, path / "model.joblib")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TabularBundle:
        import joblib

        path = Path(path)
        if not (path / "tabular.json").exists():
            raise FileNotFoundError(f"no tabular bundle at {path} (tabular.json missing)")
        meta = json.loads((path / "tabular.json").read_text())
        return cls(joblib.load(path / "model.joblib"), meta)

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature columns typed as in training; errors name the feature and the records
        (rows: 0-based positions in the request)."""
        known = set(self.features)
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise TabularInputError(
                missing[0], f"feature(s) {missing} missing; needs {self.features}"
            )
        unknown = [c for c in frame.columns if c not in known]
        if unknown:
            raise TabularInputError(
                unknown[0], f"unknown feature(s) {unknown}; needs {self.features}"
            )
        rows = np.arange(len(frame))
        out = {}
        for col in self.meta["numeric"]:
            values = frame[col]
            parsed = pd.to_numeric(values, errors="coerce").astype("float64")
            bad = (values.notna() & parsed.isna()).to_numpy()
            if bad.any():
                raise TabularInputError(
                    col,
                    "not a number at "
                    + _listing(rows, np.flatnonzero(bad), lambda p, v=values: f"{v.iat[p]!r}"),
                )
            out[col] = parsed
        for col, categories in self.meta["categories"].items():
            values = frame[col].astype("object").map(lambda v: np.nan if pd.isna(v) else str(v))
            unseen = (values.notna() & ~values.isin(categories)).to_numpy()
            if unseen.any():
                raise TabularInputError(
                    col,
                    "unseen categor(ies) at "
                    + _listing(rows, np.flatnonzero(unseen), lambda p, v=values: f"{v.iat[p]!r}")
                    + f"; known: {categories}",
                )
            out[col] = values
        return pd.DataFrame(out, index=frame.index)[self.features]

    def predict(
        self, frame: pd.DataFrame,
        transform: Callable[[pd.DataFrame], np.ndarray | None] | None = None,
    ) -> pd.DataFrame:
        """``prediction`` per row; classifiers add ``prediction_proba`` (of the positive class
        when binary, else of the predicted class) and ``proba_<class>``; anomaly ``score``.

        ``transform``: an equivalent of ``check`` + the fitted preprocessing giving the model's
        matrix (``serving.tabular_fast``), or None for a frame it leaves to the pipeline."""
        matrix = transform(frame) if transform is not None else None
        if matrix is None:
            X, model = self.check(frame), self.pipeline
        else:
            X, model = matrix, self.pipeline.named_steps["model"]
        if self.task == "regression":
            return pd.DataFrame({"prediction": model.predict(X)})
        if self.task == "anomaly":
            scores = -model.score_samples(X)
            flags = (scores >= self.meta["threshold"]).astype(int)
            return pd.DataFrame({"prediction": flags, "score": scores})
        proba = model.predict_proba(X)
        classes = self.meta["classes"]
        encoded = predict_classes(proba, self.meta.get("threshold"))
        out = pd.DataFrame({"prediction": np.asarray(classes, dtype=object)[encoded]})
        if len(classes) == 2:
            out["prediction_proba"] = proba[:, 1]
        else:
            out["prediction_proba"] = proba[np.arange(len(proba)), encoded]
        for k, label in enumerate(classes):
            out[f"proba_{label}"] = proba[:, k]
        if all(isinstance(c, int) for c in classes):
            out["prediction"] = out["prediction"].astype("int64")
        return out


def predict_classes(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Encoded classes: binary by ``threshold`` on class 1 (0.5 default), else arg-max."""
    if proba.shape[1] == 2:
        return (proba[:, 1] >= (0.5 if threshold is None else threshold)).astype(int)
    return proba.argmax(axis=1)
