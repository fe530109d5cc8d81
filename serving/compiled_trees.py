"""XGBoost tree ensembles compiled to native code for serving (TL2cgen, Treelite's C code
generator): a batch-100 prediction of 100 trees of depth 6 takes ~49 us instead of ~152 us
through xgboost's C API, a single row ~9 us instead of ~45 us (``bench/RESULTS.md``).

Compiling needs a C compiler (``gcc`` or ``clang``) and takes 1-2 s in a child process; the
library is cached by the model's bytes under ``TIDEMILL_TREES_CACHE`` (default: a
``tidemill-compiled-trees`` folder in the temp directory), so every worker and restart after
the first loads it at once.
A compiled model serves only after it has predicted a sample of rows exactly as xgboost does;
without a compiler, with ``TIDEMILL_COMPILE_TREES=0``, or on any failure, xgboost's own
predictor serves (``LeanBooster``) and the reason is logged.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_SAMPLE_ROWS = 512  # rows compared against xgboost before a compiled model serves
_TOLERANCE = 1e-5  # float32 sums of leaf values in another order differ in the last bits


def cache_dir() -> Path:
    return Path(os.environ.get("TIDEMILL_TREES_CACHE")
                or Path(tempfile.gettempdir()) / "tidemill-compiled-trees")


def _toolchain() -> str | None:
    return next((cc for cc in ("gcc", "clang") if shutil.which(cc)), None)


class CompiledTrees:
    """``inplace_predict`` of a dense float64 matrix through the compiled library (one call to
    TL2cgen's C API for the matrix, one for the batch); any other input, and every other
    attribute, is the wrapped booster's."""

    def __init__(self, libpath: Path, booster: Any) -> None:
        import tl2cgen
        from tl2cgen.libloader import _LIB, _check_call

        self._lib, self._check = _LIB, _check_call
        self.booster = booster
        self.libpath = libpath
        self.predictor = tl2cgen.Predictor(libpath, nthread=1)
        self.n_features = self.predictor.num_feature
        if (self.predictor.num_target, self.predictor.leaf_output_type) != (1, "float32"):
            raise ValueError("only single-output float32 ensembles are served compiled")
        self._missing = np.array([np.nan])  # kept alive with its address below
        self._missing_at = ctypes.c_void_p(self._missing.ctypes.data)
        self._lock = threading.Lock()  # a TL2cgen predictor serves one call at a time

    def inplace_predict(self, data: Any, **kwargs: Any) -> np.ndarray:
        if kwargs or not (isinstance(data, np.ndarray) and data.dtype == np.float64
                          and data.ndim == 2 and data.shape[1] == self.n_features
                          and data.flags.c_contiguous and data.shape[0] > 0):
            return self.booster.inplace_predict(data, **kwargs)
        rows = data.shape[0]
        out = np.zeros(rows, np.float32)  # the library adds the trees' outputs into it
        matrix = ctypes.c_void_p()
        with self._lock:  # addresses as plain pointers: ctypes' typed casts cost ~3 us each
            self._check(self._lib.TL2cgenDMatrixCreateFromMat(
                ctypes.c_void_p(data.ctypes.data), b"float64", ctypes.c_size_t(rows),
                ctypes.c_size_t(self.n_features), self._missing_at, ctypes.byref(matrix)))
            try:
                self._check(self._lib.TL2cgenPredictorPredictBatch(
                    self.predictor.handle, matrix, 0, 0, ctypes.c_void_p(out.ctypes.data)))
            finally:
                self._lib.TL2cgenDMatrixFree(matrix)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)


def _compile(raw: bytes, libpath: Path, toolchain: str) -> None:
    """Compile the xgboost model ``raw`` (UBJSON) into ``libpath`` in a child process (TL2cgen
    prints its progress, and its bundled Treelite 4.1 warns that the model was serialized by
    Treelite 4.8, harmless as ``_agrees`` checks: on the child's own stdout and stderr, while a
    serving worker that loads a model next to live traffic keeps its own). Written under a
    temporary name and renamed, so workers compiling the same model at once never load half a
    file."""
    libpath.parent.mkdir(parents=True, exist_ok=True)
    partial = libpath.with_name(f".{libpath.name}.{os.getpid()}")
    try:
        with tempfile.NamedTemporaryFile(dir=libpath.parent, suffix=".ubj") as model:
            model.write(raw)
            model.flush()
            proc = subprocess.run(
                [sys.executable, "-m", "serving.compiled_trees", model.name, str(partial),
                 toolchain], capture_output=True, text=True, timeout=600, check=False)
        log.debug("tl2cgen output: %s%s", proc.stdout, proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"the compiler process exited {proc.returncode}: "
                               f"{proc.stderr.strip()[-500:]}")
        os.replace(partial, libpath)
    finally:  # a failed or timed-out build leaves no partial library behind
        partial.unlink(missing_ok=True)


def _compile_here(model_path: str, libpath: str, toolchain: str) -> None:
    """The child process of ``_compile``."""
    import tl2cgen
    import treelite
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(model_path)
    tl2cgen.export_lib(treelite.frontend.from_xgboost(booster), toolchain=toolchain,
                       libpath=libpath, params={"parallel_comp": 1}, nthread=1)


def _agrees(compiled: CompiledTrees, booster: Any) -> bool:
    """Compiled and xgboost predictions agree on rows spread over several scales."""
    rng = np.random.default_rng(0)
    scales = np.repeat([0.1, 1.0, 10.0, 100.0], _SAMPLE_ROWS // 4)[:, None]
    sample = rng.standard_normal((_SAMPLE_ROWS, compiled.n_features)) * scales
    expected = booster.inplace_predict(sample)
    return bool(np.allclose(compiled.inplace_predict(sample), expected,
                            rtol=_TOLERANCE, atol=_TOLERANCE))


def compile_booster(booster: Any) -> CompiledTrees | None:
    """``booster`` compiled to native code, or None (xgboost's predictor then serves) when
    compiling is off or impossible here, with the reason logged."""
    if os.environ.get("TIDEMILL_COMPILE_TREES", "1") == "0":
        return None
    toolchain = _toolchain()
    if toolchain is None:
        log.info("no C compiler (gcc or clang) here: xgboost's predictor serves")
        return None
    raw = bytes(booster.save_raw("ubj"))
    libpath = cache_dir() / f"xgboost-{hashlib.sha256(raw).hexdigest()[:32]}.so"
    try:
        if not libpath.exists():
            _compile(raw, libpath, toolchain)
        compiled = CompiledTrees(libpath, booster)
        if not _agrees(compiled, booster):
            log.warning("compiled trees disagree with xgboost: xgboost's predictor serves")
            return None
    except Exception as exc:  # any failure leaves xgboost serving
        log.warning("could not compile the trees (%s): xgboost's predictor serves", exc)
        return None
    log.info("serving trees compiled to %s", libpath)
    return compiled


if __name__ == "__main__":
    _compile_here(*sys.argv[1:])
