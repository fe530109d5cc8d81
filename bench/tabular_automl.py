"""Tidemill's tabular pipeline beside FLAML's AutoML on the same split, machine and time.

For each config: ``run_pipeline`` (tune, train, evaluate, register; a fresh temporary home)
is timed; FLAML then gets the same wall-clock budget, the same training rows and the same
validation rows (``X_val``/``y_val``, its early stopping and model choice), and both are scored
on the same test rows. Classification: F1, PR-AUC, ROC-AUC, accuracy; F1 and accuracy of FLAML
at 0.5 and at the best validation-F1 threshold (Tidemill's ``decision_threshold: best_f1``
rule). Regression: R², RMSE.

    .venv/orchestrator/bin/python bench/tabular_automl.py [--config X ...] [--trials N]
        [--write-results]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines import artifact_store  # noqa: E402
from pipelines.home import TidemillHome  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from pipelines.tabular import evaluation  # noqa: E402
from pipelines.tabular.bundle import predict_classes  # noqa: E402
from pipelines.tabular.config import load_tabular_config  # noqa: E402
from pipelines.tabular.data import SPLIT_COLUMN  # noqa: E402
from pipelines.tabular.workflow import run_pipeline  # noqa: E402

CONFIGS = ["configs/ai4i_classification.yaml", "configs/diabetes_regression.yaml"]
FLAML_METRIC = {"classification": "ap", "regression": "rmse"}


def tidemill_run(config: Path, trials: int | None) -> dict:
    """Run the pipeline in a temporary home (removed afterwards); its wall time and scores."""
    with tempfile.TemporaryDirectory(prefix="bench-tabular-") as tmp:
        home = TidemillHome.resolve(tmp)
        started = time.perf_counter()
        result = run_pipeline(config, home, run_key="bench", n_trials=trials)
        wall = time.perf_counter() - started
        run_url = Settings.resolve(home).store.url("runs", "bench")
        frame = artifact_store.read_parquet(
            artifact_store.join(run_url, "prepare", "prepared.parquet")
        )
    chosen = result["registered"]["algorithm"]
    best = next(c for c in result["candidates"] if c["algorithm"] == chosen)
    return {"wall": wall, "algorithm": chosen, "test": best["test"], "frame": frame}


def flaml_run(config: Path, frame: pd.DataFrame, budget: float, seed: int) -> dict:
    from flaml import AutoML

    cfg = load_tabular_config(config)
    target = cfg.data.target_column
    features = [c for c in frame.columns if c not in (target, SPLIT_COLUMN)]
    X = frame[features].copy()
    for col in X.select_dtypes(include="object").columns:
        X[col] = X[col].astype("category")
    y = frame[target].to_numpy()
    part = frame[SPLIT_COLUMN].to_numpy()
    tr, va, te = (part == "train"), (part == "val"), (part == "test")
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(
        X[tr], y[tr], X_val=X[va], y_val=y[va], task=cfg.task,
        metric=FLAML_METRIC[cfg.task], time_budget=budget, seed=seed, n_jobs=1, verbose=0,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if cfg.task == "regression":
        test = evaluation.regression_metrics(y[te], automl.predict(X[te]))
        return {"wall": wall, "algorithm": automl.best_estimator, "test": test}
    classes = sorted(np.unique(y).tolist())
    y_te = np.searchsorted(classes, y[te])
    proba = automl.predict_proba(X[te])
    at_half = evaluation.classification_metrics(y_te, proba, predict_classes(proba, 0.5))
    cut = evaluation.best_f1_threshold(np.searchsorted(classes, y[va]),
                                       automl.predict_proba(X[va])[:, 1])  # fmt: skip
    tuned = evaluation.classification_metrics(y_te, proba, predict_classes(proba, cut))
    return {"wall": wall, "algorithm": automl.best_estimator, "test": tuned, "test_05": at_half}


def rows(config: Path, tm: dict, fl: dict) -> list[str]:
    cfg = load_tabular_config(config)
    if cfg.task == "regression":
        keys = ("r2", "rmse")
        head = "| config | system | model | R² | RMSE | wall s |\n|---|---|---|---:|---:|---:|"
    else:
        keys = ("f1", "pr_auc", "roc_auc", "accuracy")
        head = ("| config | system | model | F1 | PR-AUC | ROC-AUC | accuracy | wall s |\n"
                "|---|---|---|---:|---:|---:|---:|---:|")  # fmt: skip
    out = [head]
    systems = [("Tidemill", tm, tm["test"]), ("FLAML", fl, fl["test"])]
    if "test_05" in fl:
        systems[1] = ("FLAML (best-F1 threshold)", fl, fl["test"])
        systems.append(("FLAML (0.5 threshold)", fl, fl["test_05"]))
    for name, run, metrics in systems:
        cells = " | ".join(f"{metrics[k]:.4f}" for k in keys)
        out.append(f"| {config.name} | {name} | {run['algorithm']} | {cells} | {run['wall']:.0f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="experiment YAML (repeatable)")
    parser.add_argument("--trials", type=int, default=None, help="Optuna trials (default: config)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-results", action="store_true", help="append to RESULTS.md")
    args = parser.parse_args()
    load_start = os.getloadavg()
    started = time.perf_counter()
    lines = []
    for config in [Path(c).resolve() for c in args.config or [REPO / c for c in CONFIGS]]:
        tm = tidemill_run(config, args.trials)
        print(f"[bench] {config.name}: Tidemill {tm['algorithm']} in {tm['wall']:.0f}s; "
              f"FLAML gets the same budget", flush=True)  # fmt: skip
        fl = flaml_run(config, tm.pop("frame"), tm["wall"], args.seed)
        lines += [*rows(config, tm, fl), ""]
    table = "\n".join(lines)
    print("\n" + table)
    if args.write_results:
        command = (
            "`.venv/orchestrator/bin/python bench/tabular_automl.py "
            + " ".join(sys.argv[1:]).replace("--write-results", "").strip()
            + " --write-results`"
        )
        load_end = os.getloadavg()
        header = (
            f"\n## Tabular: Tidemill beside FLAML AutoML\n\nCommand: {command}\n\n"
            f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: "
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores (shared), Python "
            f"{platform.python_version()}. Load average at start "
            f"{'/'.join(f'{v:.2f}' for v in load_start)}, at end "
            f"{'/'.join(f'{v:.2f}' for v in load_end)}. Total wall time "
            f"{time.perf_counter() - started:.0f} s.\n\n"
            "Protocol: the config's stratified split (AI4I: 6,000 train / 2,000 validation / "
            "2,000 test rows, seed 42; diabetes: 266 / 88 / 88). Tidemill: the whole "
            "`run_pipeline` (tuning, training, evaluation, plots, MLflow logging, registration) "
            "timed; FLAML 2.8 `AutoML.fit` on the same training rows with the validation rows "
            "as `X_val`, metric `ap` (classification) or `rmse`, `time_budget` = Tidemill's "
            "wall time, `n_jobs=1`. Both scored on the same test rows. Tidemill's threshold is "
            "the best validation F1; FLAML is shown at that rule and at 0.5. Accuracy: with "
            "3.4% positives, predicting 'no failure' everywhere scores 0.966, so accuracy "
            "alone says little; F1 and PR-AUC are the figures to read.\n\n"
        )
        with open(REPO / "bench" / "RESULTS.md", "a") as fh:
            fh.write(header + table)


if __name__ == "__main__":
    main()
