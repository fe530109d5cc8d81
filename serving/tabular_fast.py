"""A numpy fast path for a tabular bundle's checks and preprocessing.

``pipelines.tabular.preprocess`` fits one ``ColumnTransformer`` (numbers: imputer, outlier
clipper, scaler; categories: imputer, one-hot or ordinal encoder) and an optional selector.
scikit-learn spends milliseconds per request validating frames through each step; here the
fitted statistics are read once and applied as array operations, in the same order and with
the same arithmetic, so the matrix the model sees is bit-for-bit the pipeline's (checked on
load: a bundle that does not match is served by its pipeline).

``FastTabular.matrix`` answers None for anything it does not take (a number sent as text, a
value it would have to refuse): the pipeline then checks the request and names the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.tabular.bundle import TabularBundle

log = logging.getLogger(__name__)

Step = Callable[[np.ndarray], None]  # in place, on a float64 (rows, columns) block


@dataclass
class _Categorical:
    fill: str  # the imputer's most frequent value
    index: dict[str, int]  # category -> position in the encoder's categories
    onehot: bool


@dataclass
class FastTabular:
    numeric: list[str]
    num_fill: np.ndarray  # imputer statistics, one per numeric column
    num_steps: list[Step]
    categorical: list[tuple[str, _Categorical]]
    support: np.ndarray | None  # the selector's kept columns
    features: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.features = frozenset(self.numeric) | {c for c, _ in self.categorical}

    def matrix(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The model's input for ``frame`` (request columns), or None: take the pipeline."""
        names = frame.columns
        if len(names) != len(self.features) or not self.features.issuperset(names):
            return None  # a missing or unknown feature: the checks name it
        n = len(frame)
        blocks = []
        if self.numeric:
            try:
                num = np.column_stack([_numbers(frame[c]) for c in self.numeric])
            except _Declined:
                return None
            missing = np.isnan(num)
            if missing.any():
                num[missing] = np.broadcast_to(self.num_fill, num.shape)[missing]
            for step in self.num_steps:
                step(num)
            blocks.append(num)
        for column, cat in self.categorical:
            codes = np.empty(n, dtype=np.intp)
            for i, value in enumerate(frame[column].tolist()):
                if value is None or (isinstance(value, float) and value != value):
                    value = cat.fill
                code = cat.index.get(value) if isinstance(value, str) else None
                if code is None:
                    return None
                codes[i] = code
            if cat.onehot:
                block = np.zeros((n, len(cat.index)))
                block[np.arange(n), codes] = 1.0
            else:
                block = codes.astype(np.float64).reshape(-1, 1)
            blocks.append(block)
        out = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
        return out[:, self.support] if self.support is not None else out


class _Declined(Exception):
    """A value the fast path leaves to the pipeline's checks."""


def _numbers(values: pd.Series) -> np.ndarray:
    if values.dtype.kind in "fiu":
        return values.to_numpy(np.float64, copy=True)
    items = values.tolist()  # object: JSON numbers and nulls as parsed, or anything else
    if all(v is None or type(v) is float or type(v) is int for v in items):
        return np.array([np.nan if v is None else v for v in items], dtype=np.float64)
    raise _Declined


def _numeric_steps(steps: list[tuple[str, Any]]) -> tuple[np.ndarray, list[Step]]:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    from pipelines.tabular.preprocess import OutlierClipper

    (_, imputer), *rest = steps
    if not isinstance(imputer, SimpleImputer) or imputer.add_indicator:
        raise _Declined
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(fill).any():  # an all-missing training column: sklearn drops it
        raise _Declined
    ops: list[Step] = []
    for _, step in rest:
        if isinstance(step, OutlierClipper):
            ops.append(lambda x, lo=step.lower_, hi=step.upper_: np.clip(x, lo, hi, out=x))
        elif isinstance(step, StandardScaler):
            if step.with_mean:
                ops.append(lambda x, m=step.mean_: np.subtract(x, m, out=x))
            if step.with_std:
                ops.append(lambda x, s=step.scale_: np.divide(x, s, out=x))
        elif isinstance(step, RobustScaler):
            if step.with_centering:
                ops.append(lambda x, c=step.center_: np.subtract(x, c, out=x))
            if step.with_scaling:
                ops.append(lambda x, s=step.scale_: np.divide(x, s, out=x))
        elif isinstance(step, MinMaxScaler) and not step.clip:
            ops.append(lambda x, s=step.scale_: np.multiply(x, s, out=x))
            ops.append(lambda x, m=step.min_: np.add(x, m, out=x))
        else:
            raise _Declined
    return fill, ops


def _categorical(
    columns: list[str], steps: list[tuple[str, Any]]
) -> list[tuple[str, _Categorical]]:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    (_, imputer), (_, encoder) = steps
    if not isinstance(imputer, SimpleImputer) or imputer.add_indicator:
        raise _Declined
    if isinstance(encoder, OneHotEncoder):
        if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
            raise _Declined
        onehot = True
    elif isinstance(encoder, OrdinalEncoder):
        onehot = False
    else:
        raise _Declined
    out = []
    for column, fill, cats in zip(columns, imputer.statistics_, encoder.categories_, strict=True):
        if not all(isinstance(c, str) for c in cats) or not isinstance(fill, str):
            raise _Declined
        out.append((column, _Categorical(fill, {c: i for i, c in enumerate(cats)}, onehot)))
    return out


def compile_bundle(bundle: TabularBundle) -> FastTabular | None:
    """The fast path of ``bundle``, or None when its pipeline holds a step it does not know."""
    from sklearn.pipeline import Pipeline

    preprocess = bundle.pipeline.named_steps["preprocess"]
    columns = preprocess.named_steps["columns"]
    numeric: list[str] = []
    fill, ops, categorical = np.empty(0), [], []
    try:
        for name, transformer, selected in columns.transformers_:
            if name == "remainder" or not len(selected):
                continue
            if not isinstance(transformer, Pipeline):
                raise _Declined
            if name == "num":
                numeric = list(selected)
                fill, ops = _numeric_steps(transformer.steps)
            elif name == "cat":
                categorical = _categorical(list(selected), transformer.steps)
            else:
                raise _Declined
    except _Declined:
        return None
    if numeric != bundle.meta["numeric"] or [c for c, _ in categorical] != \
            bundle.meta["categorical"]:
        return None
    select = preprocess.named_steps.get("select")
    support = select.get_support() if select is not None else None
    return FastTabular(numeric, fill, ops, categorical, support)


def verified(bundle: TabularBundle, frame: pd.DataFrame) -> FastTabular | None:
    """The fast path when it reproduces the pipeline's matrix exactly on ``frame`` (the
    version's example records), else None (logged)."""
    fast = compile_bundle(bundle)
    if fast is None:
        return None
    expected = bundle.pipeline.named_steps["preprocess"].transform(bundle.check(frame))
    got = fast.matrix(frame)
    if got is None or got.shape != expected.shape or not np.array_equal(got, expected):
        log.warning("tabular fast path differs from the pipeline on the example: not used")
        return None
    return fast
