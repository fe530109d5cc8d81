"""One experiment YAML for every task: ``task`` (default ``forecast``) picks the schema.

``forecast`` -> ``pipelines.config.ExperimentConfig``; ``classification``, ``regression``,
``anomaly`` -> ``pipelines.tabular.config.TabularConfig``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.config import ConfigError, read_yaml

TASKS = ("forecast", "classification", "regression", "anomaly")


def task_of(path: str | Path) -> str:
    """The ``task`` a config file declares (``forecast`` when absent); unknown ones named."""
    task = read_yaml(path).get("task", "forecast")
    if task not in TASKS:
        raise ConfigError(f"{path}: task: {task!r} is not one of {list(TASKS)}")
    return task


def load_experiment(path: str | Path) -> Any:
    """The validated config of either kind."""
    if task_of(path) == "forecast":
        from pipelines.config import load_config

        return load_config(path)
    from pipelines.tabular.config import load_tabular_config

    return load_tabular_config(path)
