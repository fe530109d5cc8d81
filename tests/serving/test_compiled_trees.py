"""XGBoost trees compiled to native code (``serving.compiled_trees``) predict as xgboost does,
are compiled once per model, and leave xgboost serving where no compiler is at hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from pipelines.models.xgboost_model import XGBoostForecaster
from serving.compiled_trees import CompiledTrees, compile_booster
from serving.served_model import LeanBooster

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETTh1.csv"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIDEMILL_TREES_CACHE", str(tmp_path / "trees"))
    monkeypatch.delenv("TIDEMILL_COMPILE_TREES", raising=False)
    return tmp_path / "trees"


def _booster(depth: int = 6, rounds: int = 60) -> xgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 12))
    y = np.sin(x[:, 0]) * 3 + x[:, 1] * x[:, 2] + rng.normal(scale=0.1, size=2000)
    return xgb.train({"max_depth": depth, "nthread": 1, "eta": 0.3}, xgb.DMatrix(x, label=y),
                     num_boost_round=rounds)


def test_compiled_trees_predict_as_xgboost(_cache: Path) -> None:
    booster = _booster()
    compiled = compile_booster(LeanBooster(booster))
    assert isinstance(compiled, CompiledTrees)
    assert list(_cache.glob("*.so")) == [compiled.libpath]
    rng = np.random.default_rng(4)
    for rows in (1, 7, 100, 1000):
        data = rng.normal(size=(rows, 12)) * 2
        got, expected = compiled.inplace_predict(data), booster.inplace_predict(data)
        assert got.dtype == np.float32 and got.shape == (rows,)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    strided = rng.normal(size=(20, 12))[::2]  # not contiguous: xgboost's own call
    assert (compiled.inplace_predict(strided) == booster.inplace_predict(strided)).all()
    assert compiled.num_features() == 12  # everything else is the booster's


def test_a_model_is_compiled_once(_cache: Path) -> None:
    booster = _booster(depth=3, rounds=10)
    first = compile_booster(booster)
    assert first is not None
    built = first.libpath.stat().st_mtime_ns
    again = compile_booster(booster)
    assert again is not None and again.libpath == first.libpath
    assert again.libpath.stat().st_mtime_ns == built  # loaded, not rebuilt
    other = compile_booster(_booster(depth=3, rounds=11))
    assert other is not None and other.libpath != first.libpath


def test_without_a_compiler_xgboost_serves(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    booster = _booster(depth=2, rounds=5)
    monkeypatch.setenv("TIDEMILL_COMPILE_TREES", "0")
    assert compile_booster(booster) is None
    monkeypatch.delenv("TIDEMILL_COMPILE_TREES")
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no gcc or clang on it
    assert compile_booster(booster) is None


def test_the_forecaster_serves_the_same_forecasts_compiled() -> None:
    """The recursive roll-out of a real XGBoost forecaster (ETTh1 OT) through the compiled
    trees gives xgboost's forecasts."""
    y = pd.read_csv(ETTH1, usecols=["OT"])["OT"].to_numpy()[:3000]
    model = XGBoostForecaster(horizon=24, lookback=48, n_estimators=100, max_depth=6)
    model.fit(y[:2500])
    histories = np.stack([y[i:i + 48] for i in range(2500, 2900, 4)])
    expected = model.predict(histories)
    compiled = compile_booster(LeanBooster(model.booster))
    assert compiled is not None
    model.booster = compiled
    np.testing.assert_allclose(model.predict(histories), expected, rtol=1e-5, atol=1e-4)


def test_a_failing_compiler_leaves_xgboost_serving_and_no_files(
        _cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcc = bin_dir / "gcc"  # a compiler that fails every build
    gcc.write_text("#!/bin/sh\necho 'gcc: internal compiler error' >&2\nexit 1\n")
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert compile_booster(_booster(depth=2, rounds=5)) is None
    assert [p.name for p in _cache.iterdir()] == []  # no library, no partial file
