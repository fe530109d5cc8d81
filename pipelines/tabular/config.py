"""Experiment YAML of the tabular tasks (classification, regression, anomaly), with pydantic.

The same file format as forecasting (``pipelines.config``): ``task`` picks the schema, the
sources, search spaces and MLflow block are shared, and errors name the field path.
``pipelines.experiment.load_experiment`` reads either kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.config import (
    AlgorithmConfig,
    ConfigError,
    CsvSource,
    Location,
    MlflowConfig,
    ParquetSource,
    RowSlice,
    SqlSource,
    config_error,
    read_yaml,
    resolve_location,
)

TabularTask = Literal["classification", "regression", "anomaly"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExcelSource(_Strict):
    kind: Literal["excel"] = "excel"
    path: Location
    sheet: str | int = 0


class SklearnSource(_Strict):
    """A dataset that ships inside scikit-learn (no download)."""

    kind: Literal["sklearn"] = "sklearn"
    name: Literal["diabetes", "breast_cancer", "wine", "iris"]


class FeastSource(_Strict):
    """Rows from the feature store (``pipelines.feature_store``): the labelled events of
    ``events`` (CSV or Parquet: the view's key, ``event_timestamp`` and the label) with
    ``features`` of ``view`` as they stood at each event's time (Feast's point-in-time join; a
    value stamped later never enters the row). The store is the Tidemill home's
    (``TIDEMILL_HOME``) or ``TIDEMILL_FEAST_*``'s."""

    kind: Literal["feast"] = "feast"
    view: str
    events: Location
    features: list[str] = Field(min_length=1)


TabularSource = Annotated[
    CsvSource | ParquetSource | ExcelSource | SqlSource | SklearnSource | FeastSource,
    Field(discriminator="kind"),
]


class TabularDataConfig(_Strict):
    source: TabularSource
    target_column: str | None = Field(
        None, description="label; optional only for anomaly detection without labels"
    )
    feature_columns: list[str] | None = Field(
        None, description="default: every column not named as target, id, leakage or dropped"
    )
    categorical_columns: list[str] | None = Field(
        None, description="default: the feature columns whose values are not numeric"
    )
    id_columns: list[str] = Field([], description="identifiers: never features")
    leakage_columns: list[str] = Field([], description="columns that leak the label: dropped")
    time_column: str | None = Field(None, description="orders rows for time-series split/CV")
    rows: RowSlice | None = None
    max_missing_fraction: float = Field(0.5, ge=0, le=1)


class SplitConfig(_Strict):
    """Fractions of all rows; stratified by the label for classification (and labelled anomaly)."""

    val_size: float = Field(0.2, gt=0, lt=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    stratify: bool = True
    seed: int = 42

    @model_validator(mode="after")
    def _room_for_training(self) -> SplitConfig:
        if self.val_size + self.test_size >= 0.9:
            raise ValueError(
                f"val_size + test_size is {self.val_size + self.test_size}; "
                "leave at least 10% of the rows for training"
            )
        return self


class OutlierConfig(_Strict):
    method: Literal["none", "iqr", "zscore"] = "none"
    threshold: float = Field(1.5, gt=0, description="IQR multiplier or z-score limit")
    action: Literal["clip", "drop"] = Field(
        "clip",
        description="clip: bounds learnt on training rows, applied at serving too; "
        "drop: remove training rows outside them",
    )


class TabularPreprocessConfig(_Strict):
    numeric_imputation: Literal["mean", "median", "drop", "ffill", "bfill"] = "median"
    categorical_imputation: Literal["mode", "drop", "ffill", "bfill"] = "mode"
    outliers: OutlierConfig = OutlierConfig()
    encoding: Literal["onehot", "ordinal"] = "onehot"
    scaler: Literal["standard", "minmax", "robust", "none"] = "standard"


class FeatureSelectionConfig(_Strict):
    method: Literal[
        "none", "correlation", "mutual_info", "rfe", "tree_importance", "statistical"
    ] = "none"
    n_features: int | None = Field(None, ge=1, description="default: half of the features")


class ImbalanceConfig(_Strict):
    method: Literal["none", "class_weight", "oversample", "undersample", "smote"] = "none"


class CvConfig(_Strict):
    method: Literal["kfold", "stratified", "timeseries"] = "stratified"
    folds: int = Field(3, ge=2, le=20)


class TabularTuningConfig(_Strict):
    method: Literal["tpe", "grid", "random"] = "tpe"
    n_trials: int = Field(10, ge=1)
    metric: str | None = Field(
        None, description="default: pr_auc (classification, anomaly), rmse (regression)"
    )
    seed: int = 42
    storage: str | None = Field(None, description="Optuna storage URL; default SQLite in home")
    timeout_s: float | None = Field(None, gt=0)
    early_stopping_rounds: int = Field(
        30, ge=1, description="patience of boosted models (LightGBM, XGBoost) on held-out rows"
    )


class AnomalyConfig(_Strict):
    contamination: float = Field(0.05, gt=0, le=0.5, description="expected anomaly share")
    threshold: Literal["contamination", "best_f1"] = Field(
        "contamination",
        description="score cut: the contamination quantile of training scores, or the best "
        "validation F1 when labels exist",
    )
    companion: str | None = Field(
        None, description="a supervised classifier trained beside the detector when labelled"
    )


class ModelCardConfig(_Strict):
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    ethical_considerations: str = ""


METRICS: dict[str, dict[str, str]] = {
    "classification": {
        "accuracy": "maximize",
        "balanced_accuracy": "maximize",
        "precision": "maximize",
        "recall": "maximize",
        "f1": "maximize",
        "roc_auc": "maximize",
        "pr_auc": "maximize",
        "log_loss": "minimize",
    },
    "regression": {
        "r2": "maximize",
        "rmse": "minimize",
        "mae": "minimize",
        "mape": "minimize",
        "explained_variance": "maximize",
    },
    "anomaly": {"pr_auc": "maximize", "roc_auc": "maximize", "f1": "maximize"},
}
DEFAULT_METRIC = {"classification": "pr_auc", "regression": "rmse", "anomaly": "pr_auc"}


class TabularConfig(_Strict):
    name: str
    task: TabularTask
    data: TabularDataConfig
    split: SplitConfig = SplitConfig()
    preprocess: TabularPreprocessConfig = TabularPreprocessConfig()
    feature_selection: FeatureSelectionConfig = FeatureSelectionConfig()
    imbalance: ImbalanceConfig = ImbalanceConfig()
    cv: CvConfig = CvConfig()
    algorithms: dict[str, AlgorithmConfig]
    tuning: TabularTuningConfig = TabularTuningConfig()
    decision_threshold: float | Literal["best_f1"] = Field(
        0.5, description="binary classification: probability cut, or the best validation F1"
    )
    anomaly: AnomalyConfig = AnomalyConfig()
    model_card: ModelCardConfig = ModelCardConfig()
    mlflow: MlflowConfig = MlflowConfig()

    @model_validator(mode="after")
    def _consistent(self) -> TabularConfig:
        from pipelines.tabular.algorithms.registry import check_algorithm

        if not self.algorithms:
            raise ValueError("algorithms: at least one algorithm is required")
        for name in self.algorithms:
            check_algorithm(name, self.task)
        if self.anomaly.companion:
            check_algorithm(self.anomaly.companion, "classification")
        if self.task != "anomaly" and not self.data.target_column:
            raise ValueError(f"data.target_column is required for task {self.task}")
        metric = self.metric
        if metric not in METRICS[self.task]:
            raise ValueError(
                f"tuning.metric {metric!r} is not a {self.task} metric; "
                f"choose one of {sorted(METRICS[self.task])}"
            )
        if self.task == "anomaly" and not self.data.target_column:
            if self.tuning.metric or self.anomaly.threshold == "best_f1":
                raise ValueError(
                    "tuning.metric and anomaly.threshold best_f1 need data.target_column "
                    "(labels); without labels the detector is fitted untuned"
                )
            if self.anomaly.companion:
                raise ValueError("anomaly.companion needs data.target_column (labels)")
        if self.tuning.method == "grid":
            from pipelines.tabular.tuning import grid_of

            for name, algo in self.algorithms.items():
                try:
                    grid_of(algo.search_space)
                except ConfigError as exc:
                    raise ValueError(f"algorithms.{name}.{exc}") from None
        if self.feature_selection.method != "none" and not self.labelled:
            raise ValueError("feature_selection needs data.target_column (labels)")
        if self.cv.method == "timeseries" and not self.data.time_column:
            raise ValueError("cv.method timeseries needs data.time_column")
        return self

    @property
    def metric(self) -> str:
        return self.tuning.metric or DEFAULT_METRIC[self.task]

    @property
    def direction(self) -> str:
        return METRICS[self.task][self.metric]

    @property
    def labelled(self) -> bool:
        return self.data.target_column is not None

    def with_overrides(
        self, algorithms: list[str] | None = None, n_trials: int | None = None
    ) -> TabularConfig:
        """A copy with the trigger-form overrides applied (and validated)."""
        data = self.model_dump(mode="json")
        if algorithms:
            unknown = sorted(set(algorithms) - set(self.algorithms))
            if unknown:
                raise ConfigError(
                    f"algorithms {unknown} are not configured; "
                    f"configured: {sorted(self.algorithms)}"
                )
            data["algorithms"] = {a: data["algorithms"][a] for a in algorithms}
        if n_trials is not None:
            data["tuning"]["n_trials"] = n_trials
        return parse_tabular_config(data)


def parse_tabular_config(data: dict[str, Any], origin: str = "config") -> TabularConfig:
    """Validate a mapping; errors name the field path."""
    try:
        return TabularConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, origin) from None


def load_tabular_config(location: str | Path) -> TabularConfig:
    """Read and validate a tabular experiment YAML (a path or a URL); relative data paths are
    taken against its folder."""
    cfg = parse_tabular_config(read_yaml(location), origin=str(location))
    source = cfg.data.source
    if isinstance(source, FeastSource):
        source.events = resolve_location(source.events, location)
    elif not isinstance(source, SqlSource | SklearnSource):
        source.path = resolve_location(source.path, location)
    return cfg
