"""The model card of a registered tabular model (Markdown; logged with the run and set as
the registered version's description)."""

from __future__ import annotations

from typing import Any

from pipelines.tabular.config import TabularConfig


def _table(metrics: dict[str, float]) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    return "| metric | value |\n|---|---|\n" + rows


def render(cfg: TabularConfig, candidate: dict[str, Any], data: dict[str, Any]) -> str:
    """Description, intended use, training data (with its hash), test and validation
    metrics, limitations and ethical considerations."""
    card = cfg.model_card
    dropped = "; ".join(f"`{c}`: {why}" for c, why in data["dropped"].items()) or "none"
    balance = data.get("class_counts")
    balance_line = f"- Class counts (all rows): {balance}\n" if balance else ""
    threshold = candidate.get("threshold")
    threshold_line = f"- Decision threshold: {threshold:.4f}\n" if threshold is not None else ""
    params = ", ".join(f"{k}={v}" for k, v in candidate["params"].items()) or "defaults"
    return f"""# Model card: {cfg.mlflow.registered_model_name} ({cfg.task})

## Description
{card.description or "(not given in the config)"}

- Algorithm: `{candidate["algorithm"]}` ({params})
{threshold_line}- Candidates of this run, compared on validation {cfg.metric}: \
{", ".join(data["algorithms"])}
- Experiment: `{cfg.name}`, pipeline run `{data["pipeline_run"]}`

## Intended use
{card.intended_use or "(not given in the config)"}

## Training data
- Source: {data["source"]}
- Snapshot sha256: `{data["sha256"]}` ({data["rows"]} rows)
- Target: `{cfg.data.target_column}`; features: numeric {data["numeric"]}, categorical \
{data["categorical"]}
- Dropped columns: {dropped}
{balance_line}- Split: train {data["parts"]["train"]}, validation {data["parts"]["val"]}, test \
{data["parts"]["test"]} rows (seed {cfg.split.seed})

## Metrics on the test split
{_table(candidate["test"])}

## Metrics on the validation split
{_table(candidate["val"])}

## Limitations
{card.limitations or "(not given in the config)"}

## Ethical considerations
{card.ethical_considerations or "(not given in the config)"}
"""
