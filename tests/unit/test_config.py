"""Config validation: good files load, bad ones get errors that name the field."""

from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base() -> dict:
    return yaml.safe_load((REPO / "configs" / "etth1.yaml").read_text())


def test_bundled_config_loads_and_resolves_data_path():
    cfg = load_config(REPO / "configs" / "etth1.yaml")
    assert cfg.data.source.path == str((REPO / "data" / "ETTh1.csv").resolve())
    assert Path(cfg.data.source.path).exists()
    assert set(cfg.algorithms) == {"seasonal_naive", "nlinear", "arima", "xgboost", "lstm"}


def test_unknown_algorithm_named(tmp_path):
    data = _base()
    data["algorithms"]["prophet"] = {}
    with pytest.raises(ConfigError, match="unknown algorithms \\['prophet'\\]"):
        load_config(_write(tmp_path, data))


def test_wrong_type_names_field_path(tmp_path):
    data = _base()
    data["horizon"] = "soon"
    with pytest.raises(ConfigError, match="horizon"):
        load_config(_write(tmp_path, data))
    data = _base()
    data["tuning"]["n_trials"] = 0
    with pytest.raises(ConfigError, match=r"tuning\.n_trials"):
        load_config(_write(tmp_path, data))


def test_typo_field_rejected(tmp_path):
    data = _base()
    data["split"]["vall_size"] = 10
    with pytest.raises(ConfigError, match=r"split\.vall_size"):
        load_config(_write(tmp_path, data))


def test_search_space_bounds(tmp_path):
    data = _base()
    data["algorithms"]["nlinear"]["search_space"]["alpha"] = {"type": "float", "low": 5, "high": 1}
    with pytest.raises(ConfigError, match="low' <= 'high"):
        load_config(_write(tmp_path, data))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_validate():
    cfg = load_config(REPO / "configs" / "etth1.yaml")
    small = cfg.with_overrides(["nlinear"], n_trials=2, horizon=12)
    assert list(small.algorithms) == ["nlinear"]
    assert small.tuning.n_trials == 2 and small.horizon == 12
    with pytest.raises(ConfigError, match="not configured"):
        cfg.with_overrides(["prophet"])


def test_selection_metric_defaults_to_tuning_metric(tmp_path):
    etth1 = load_config(REPO / "configs" / "etth1.yaml")
    assert etth1.selection.metric is None
    assert etth1.selection_metric == etth1.tuning.metric
    data = _base()
    data["selection"] = {"metric": "owa"}
    assert load_config(_write(tmp_path, data)).selection_metric == "owa"
    data["selection"] = {"metric": "r2"}
    with pytest.raises(ConfigError, match=r"selection\.metric"):
        load_config(_write(tmp_path, data))


def test_m4_selects_on_owa_over_three_horizons_of_validation():
    m4 = load_config(REPO / "configs" / "m4_hourly.yaml")
    assert m4.selection_metric == "owa" and m4.split.val_size == 3 * m4.horizon
