"""The one config schema: task picks forecast or tabular; errors name the field."""

from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, ExperimentConfig
from pipelines.experiment import load_experiment, task_of
from pipelines.tabular.config import TabularConfig, load_tabular_config

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _ai4i() -> dict:
    data = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    data["data"]["source"]["path"] = str(REPO / "data" / "ai4i2020.csv")
    return data


def test_forecast_config_without_task_still_loads():
    assert task_of(REPO / "configs" / "etth1.yaml") == "forecast"
    cfg = load_experiment(REPO / "configs" / "etth1.yaml")
    assert isinstance(cfg, ExperimentConfig) and cfg.task == "forecast"


@pytest.mark.parametrize(
    ("name", "task", "metric"),
    [
        ("ai4i_classification", "classification", "pr_auc"),
        ("ai4i_anomaly", "anomaly", "pr_auc"),
        ("diabetes_regression", "regression", "rmse"),
    ],
)
def test_bundled_tabular_configs_load(name, task, metric):
    cfg = load_experiment(REPO / "configs" / f"{name}.yaml")
    assert isinstance(cfg, TabularConfig)
    assert (cfg.task, cfg.metric) == (task, metric)
    assert cfg.data.source.kind == "sklearn" or Path(cfg.data.source.path).exists()


def test_ai4i_excludes_the_failure_modes():
    cfg = load_tabular_config(REPO / "configs" / "ai4i_classification.yaml")
    assert cfg.data.leakage_columns == ["TWF", "HDF", "PWF", "OSF", "RNF"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(task="clustering"), "task: 'clustering' is not one of"),
        (lambda d: d["algorithms"].update(ridge={}), "'ridge' does not do classification"),
        (lambda d: d["algorithms"].update(catboost={}), "unknown algorithm 'catboost'"),
        (lambda d: d["tuning"].update(metric="rmse"), "tuning.metric 'rmse' is not a classif"),
        (lambda d: d["tuning"].update(method="bayes"), "tuning.method"),
        (lambda d: d["preprocess"].update(scaler="log"), "preprocess.scaler"),
        (lambda d: d["split"].update(val_size=0.5, test_size=0.45), "leave at least 10%"),
        (lambda d: d["cv"].update(method="timeseries"), "timeseries needs data.time_column"),
        (lambda d: d["data"].pop("target_column"), "target_column is required"),
        (lambda d: d.update(extra_field=1), "extra_field"),
    ],
)
def test_bad_config_names_the_field(tmp_path, change, message):
    data = _ai4i()
    change(data)
    with pytest.raises(ConfigError, match=message):
        load_experiment(_write(tmp_path, data))


def test_overrides_pick_algorithms_and_trials():
    cfg = load_tabular_config(REPO / "configs" / "ai4i_classification.yaml")
    small = cfg.with_overrides(["lightgbm"], 2)
    assert list(small.algorithms) == ["lightgbm"] and small.tuning.n_trials == 2
    with pytest.raises(ConfigError, match="not configured"):
        cfg.with_overrides(["svm"])


def test_grid_search_needs_steps_for_floats(tmp_path):
    data = _ai4i()
    data["tuning"]["method"] = "grid"
    with pytest.raises(
        ConfigError, match=r"algorithms\.lightgbm\.search_space\.learning_rate: grid"
    ):
        load_experiment(_write(tmp_path, data))
