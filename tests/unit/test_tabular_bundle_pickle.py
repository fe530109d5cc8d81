"""A tabular bundle saved where dill is imported (Airflow's task processes) loads where there is
no dill (serving's environment): dill's reducers never reach the pickle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAVE = """
import sys
import dill  # extends pickle's pure-Python Pickler, as in an Airflow task process
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from pipelines.tabular.bundle import TabularBundle

frame = pd.DataFrame({"torque": [40.0, 42.5, 51.0, 38.2], "type": ["L", "M", "L", "H"]})
pipe = Pipeline([
    ("pre", ColumnTransformer([("num", StandardScaler(), ["torque"]),
                               ("cat", OneHotEncoder(), ["type"])])),  # slices in output_indices_
    ("model", LogisticRegression()),
]).fit(frame, [0, 1, 0, 1])
TabularBundle(pipe, {"task": "classification"}).save(sys.argv[1])
extended = sum("dill" in f.__module__ for f in __import__("pickle")._Pickler.dispatch.values())
print(extended, pipe.predict_proba(frame.iloc[[0, 2]])[:, 1].round(12).tolist())
"""

LOAD = """
import sys
sys.modules["dill"] = None  # no dill here, as in serving's environment
import pandas as pd
from pipelines.tabular.bundle import TabularBundle

bundle = TabularBundle.load(sys.argv[1])
frame = pd.DataFrame({"torque": [40.0, 51.0], "type": ["L", "L"]})  # rows 0 and 2
print(bundle.pipeline.predict_proba(frame)[:, 1].round(12).tolist())
"""


def run(code: str, path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_bundle_saved_with_dill_imported_loads_without_dill(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    extended, saved = run(SAVE, bundle).split(" ", 1)
    assert int(extended) > 0  # dill's extension is back once the bundle is saved
    assert b"dill" not in (bundle / "model.joblib").read_bytes()
    assert run(LOAD, bundle) == saved
