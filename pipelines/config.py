"""Experiment configuration: one YAML file per experiment, validated with pydantic.

Relative paths in the file are resolved against the file's own folder, so a config works from
any working directory. A config and the data it names may also sit behind an fsspec URL
(``s3://bucket/configs/x.yaml``): a task on another machine reads them through the artifact
store. Another dataset needs another YAML file, not new code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines import artifact_store
from pipelines.models.registry import MODELS, get_model_class


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _location(value: Any) -> Any:
    """A local path or an fsspec URL, kept as text (``Path`` would fold ``s3://`` to ``s3:/``)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and not value.strip():
        raise ValueError("must name a file (a path or a URL such as s3://bucket/data.csv)")
    return value


Location = Annotated[
    str,
    BeforeValidator(_location),
    Field(description="a local path (relative: to the config file's folder) or an fsspec URL"),
]


def resolve_location(location: str, config_location: str | Path) -> str:
    """``location`` as an absolute path or a URL: a relative one is taken against the folder
    of the config that names it (a local folder or the config's own URL)."""
    if not artifact_store.is_local(location):
        return location
    path = Path(location.removeprefix("file://"))
    if path.is_absolute():
        return str(path)
    origin = str(config_location)
    if artifact_store.is_local(origin):
        return str((Path(origin.removeprefix("file://")).parent / path).resolve())
    return artifact_store.join(origin.rsplit("/", 1)[0], path.as_posix())


class CsvSource(_Strict):
    kind: Literal["csv"] = "csv"
    path: Location


class ParquetSource(_Strict):
    kind: Literal["parquet"] = "parquet"
    path: Location


class SqlSource(_Strict):
    kind: Literal["sql"] = "sql"
    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    query: str


Source = Annotated[CsvSource | ParquetSource | SqlSource, Field(discriminator="kind")]


class RowSlice(_Strict):
    """Use only rows [start, stop) of the source (small runs, tests)."""

    start: int = Field(0, ge=0)
    stop: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RowSlice:
        if self.stop is not None and self.stop <= self.start:
            raise ValueError(f"rows.stop ({self.stop}) must be greater than start ({self.start})")
        return self


CalendarTerm = Literal["hour_of_day", "day_of_week"]


class ExogenousConfig(_Strict):
    """Regressors beside the target (``pipelines.exogenous``): ``historical`` source columns
    are known up to the forecast origin (the models see their recent past), ``future`` source
    columns are known over the horizon too (planned prices, promotions, weather forecasts: a
    request carries them for every step it forecasts), ``calendar`` terms are future
    regressors derived from the timestamps (nobody sends them)."""

    historical: list[str] = []
    future: list[str] = []
    calendar: list[CalendarTerm] = []

    @model_validator(mode="after")
    def _declared_once(self) -> ExogenousConfig:
        named = [*self.historical, *self.future]
        twice = sorted({c for c in named if named.count(c) > 1})
        if twice:
            raise ValueError(
                f"columns {twice} are declared more than once (a regressor is either "
                "historical or future, once)"
            )
        repeated = sorted({c for c in self.calendar if self.calendar.count(c) > 1})
        if repeated:
            raise ValueError(f"calendar terms {repeated} are listed more than once")
        return self


class DataConfig(_Strict):
    source: Source
    time_column: str = "ds"
    target_column: str = "y"
    id_column: str | None = None
    series_id: str = Field("series", description="unique_id used when the source has no id")
    exogenous: ExogenousConfig = ExogenousConfig()
    freq: str = Field("h", description="pandas frequency alias of the series, e.g. h, D, 15min")
    rows: RowSlice | None = None
    invalid_series: Literal["fail", "drop"] = Field(
        "fail",
        description="a series with data problems fails the run, or is dropped and recorded "
        "(problems not tied to one series always fail)",
    )

    @model_validator(mode="before")
    @classmethod
    def _exog_columns(cls, data: Any) -> Any:
        """``exog_columns`` (the earlier form) declares historical regressors."""
        if isinstance(data, dict) and "exog_columns" in data:
            data = dict(data)
            columns = data.pop("exog_columns") or []
            exogenous = data.get("exogenous") or {}
            if isinstance(exogenous, ExogenousConfig):
                exogenous = exogenous.model_dump()
            data["exogenous"] = {**exogenous,
                                 "historical": [*exogenous.get("historical", []), *columns]}
        return data

    @property
    def exog_columns(self) -> list[str]:
        """The source columns of the declared regressors: historical, then future."""
        return [*self.exogenous.historical, *self.exogenous.future]

    @field_validator("freq")
    @classmethod
    def _known_freq(cls, value: str) -> str:
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a pandas frequency alias (e.g. h, D, 15min)"
            ) from None
        return value


class SplitConfig(_Strict):
    """Chronological split of each series: the last steps are test, the ones before validation.

    ``align: per_series`` cuts the last ``test_size`` (then ``val_size``) rows of each series;
    ``align: common`` cuts every series at the same timestamps, counted back from the panel's
    last timestamp (a series that ends earlier has fewer validation/test rows).
    """

    val_size: int = Field(..., ge=1)
    test_size: int = Field(..., ge=1)
    train_size: int | None = Field(None, ge=1, description="default: every row before val")
    align: Literal["per_series", "common"] = "per_series"
    refit: bool = Field(
        False,
        description="after validation, fit each candidate again on train + validation: the "
        "test window and the registered model use that fit (M4's entries trained on every "
        "value before the test); selection, ensemble weights and intervals stay on the fit "
        "on train that validation scored",
    )


class PreprocessConfig(_Strict):
    imputation: Literal["none", "ffill", "linear", "mean"] = "linear"
    scaler: Literal["standard", "minmax", "none"] = "standard"
    target_transform: Literal["none", "log"] = Field(
        "none",
        description="log: the models see log(y) (then scaled); forecasts are exp'd back. Needs "
        "y > 0 in training and in every served window (M4 hourly: bench/RESULTS.md)",
    )
    max_missing_fraction: float = Field(0.2, ge=0, le=1)


class SearchParam(_Strict):
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical search parameter needs non-empty 'choices'")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"{self.type} search parameter needs 'low' <= 'high'")
        return self


class AlgorithmConfig(_Strict):
    params: dict[str, Any] = Field({}, description="fixed hyper-parameters")
    search_space: dict[str, SearchParam] = {}
    exogenous: bool = Field(
        True,
        description="false: this model is tuned, fitted and served without the regressors of "
        "data.exogenous (the other models still use them)",
    )


class TuningConfig(_Strict):
    n_trials: int = Field(10, ge=1)
    cv_folds: int = Field(3, ge=1)
    seed: int = 42
    metric: Literal["mae", "rmse", "smape", "wape", "mase"] = "mae"
    storage: str | None = Field(None, description="Optuna storage URL; default SQLite in home")
    timeout_s: float | None = Field(None, gt=0)
    max_origins_per_fold: int = Field(200, ge=1, description="subsample origins for speed")


class MlflowConfig(_Strict):
    tracking_uri: str | None = Field(None, description="default: SQLite in the Tidemill home")
    experiment: str = "tidemill"
    registered_model_name: str = "tidemill-forecaster"


class EnsembleConfig(_Strict):
    """An extra candidate built from the ``top_k`` best candidates on validation: their mean,
    median, or ``weighted`` mean, the weights chosen by greedy forward selection with
    replacement (``rounds`` additions) minimising the selection metric on the validation
    windows. A weighted ensemble is selected on its cross-fitted score (weights fitted on one
    half of each series' validation windows score the other half, and vice versa), so it needs
    ``split.val_size >= horizon + 1``; ingest refuses one validation window per series."""

    enabled: bool = False
    top_k: int = Field(3, ge=2)
    combine: Literal["mean", "median", "weighted"] = "mean"
    rounds: int = Field(10, ge=1, description="weighted: greedy additions (weights in 1/rounds)")


class SelectionConfig(_Strict):
    """How the registered candidate is chosen: the lowest ``metric`` on validation, averaged
    over every forecast window of the validation rows (``split.val_size - horizon + 1``
    stride-1 origins per series; a ``val_size`` of several horizons gives several windows).
    The ensemble's members are the best candidates on the same score."""

    metric: Literal["mae", "rmse", "smape", "wape", "mase", "owa"] | None = Field(
        None, description="default: tuning.metric; owa = M4's (sMAPE and MASE vs Naive2)"
    )


class EngineConfig(_Strict):
    """Where per-series fits run (``pipelines.engine``); unset fields: the environment's."""

    kind: Literal["local", "ray"] | None = None
    address: str | None = Field(None, description="ray://head:10001, auto, or none: local Ray")


class ExperimentConfig(_Strict):
    name: str
    task: Literal["forecast"] = Field("forecast", description="tabular tasks: pipelines.tabular")
    data: DataConfig
    split: SplitConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    horizon: int = Field(24, ge=1, le=10_000)
    level: float = Field(0.9, gt=0, lt=1)
    algorithms: dict[str, AlgorithmConfig]
    tuning: TuningConfig = TuningConfig()
    mlflow: MlflowConfig = MlflowConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    selection: SelectionConfig = SelectionConfig()
    engine: EngineConfig = EngineConfig()

    @property
    def selection_metric(self) -> str:
        """The validation metric that ranks candidates (``selection.metric`` or tuning's)."""
        return self.selection.metric or self.tuning.metric

    @model_validator(mode="after")
    def _known_algorithms(self) -> ExperimentConfig:
        unknown = sorted(set(self.algorithms) - set(MODELS))
        if unknown:
            raise ValueError(f"unknown algorithms {unknown}; known: {sorted(MODELS)}")
        if not self.algorithms:
            raise ValueError("at least one algorithm is required")
        return self

    @model_validator(mode="after")
    def _regressor_opt_outs(self) -> ExperimentConfig:
        """``algorithms.<name>.exogenous: false`` only where there is something to opt out of."""
        for name, algo in self.algorithms.items():
            if algo.exogenous:
                continue
            declared = self.data.exogenous
            if not (declared.historical or declared.future or declared.calendar):
                raise ValueError(f"algorithms.{name}.exogenous: false, but data.exogenous "
                                 "declares no regressors to leave out")
            if not get_model_class(name).uses_exog:  # imported only for an opt-out
                raise ValueError(f"algorithms.{name}.exogenous: {name} never uses regressors "
                                 "(see README); remove the field")
        return self

    def with_overrides(
        self,
        algorithms: list[str] | None = None,
        n_trials: int | None = None,
        horizon: int | None = None,
    ) -> ExperimentConfig:
        """A copy with the Airflow trigger-form overrides applied (and validated)."""
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
        if horizon is not None:
            data["horizon"] = horizon
        return parse_config(data)


def config_error(exc: ValidationError, origin: str) -> ConfigError:
    """One error naming every failing field path of a pydantic validation."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
    return ConfigError(f"{origin}: {problems}")


def parse_config(data: dict[str, Any], origin: str = "config") -> ExperimentConfig:
    """Validate a config mapping; errors name the field path."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, origin) from None


def read_yaml(location: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (a path or an artifact-store URL); errors name it."""
    location = str(location)
    try:
        raw = yaml.safe_load(artifact_store.read_text(location))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {location}") from None
    except artifact_store.ArtifactStoreError as exc:
        raise ConfigError(f"config file {location} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{location}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{location}: expected a mapping at the top level")
    return raw


def load_config(location: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML (a path or a URL); relative data paths are taken
    against its folder."""
    cfg = parse_config(read_yaml(location), origin=str(location))
    source = cfg.data.source
    if isinstance(source, CsvSource | ParquetSource):
        source.path = resolve_location(source.path, location)
    return cfg
