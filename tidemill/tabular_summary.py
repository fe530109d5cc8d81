"""``tidemill train`` for tabular tasks: run the pipeline, print the candidates' metrics."""

from __future__ import annotations

from pathlib import Path

from pipelines.home import TidemillHome

COLUMNS = {
    "classification": ("f1", "pr_auc", "roc_auc", "accuracy", "balanced_accuracy"),
    "regression": ("r2", "rmse", "mae", "mape"),
    "anomaly": ("pr_auc", "roc_auc", "f1", "anomaly_rate"),
}


def train_tabular(
    config: str | Path, home: TidemillHome, algorithms: list[str] | None, trials: int | None
) -> int:
    from pipelines.tabular.workflow import run_pipeline

    result = run_pipeline(config, home, algorithms=algorithms, n_trials=trials)
    registered = result["registered"]
    columns = COLUMNS[registered["task"]]
    metric = result["candidates"][0]["metric"]
    widths = [len(f"test {c}") + 2 for c in columns]
    header = f"{'algorithm':<22}{'val ' + metric:>14}" + "".join(
        f"{'test ' + c:>{w}}" for c, w in zip(columns, widths, strict=True)
    )
    print("\nCandidates (val = selection, test = held out):")
    print(header + "\n" + "-" * len(header))
    for c in result["candidates"]:
        cells = "".join(
            f"{c['test'].get(k, float('nan')):>{w}.4f}"
            for k, w in zip(columns, widths, strict=True)
        )
        print(f"{c['algorithm']:<22}{c['val_metric']:>14.4f}{cells}")
    print(
        f"\nRegistered: {registered['name']} version {registered['version']} "
        f"({registered['algorithm']}), aliases: {', '.join(registered['aliases'])}; "
        f"model card in the version description. {result['seconds']:.0f}s in all."
    )
    print(f"  MLflow UI: mlflow ui --backend-store-uri {registered['tracking_uri']}")
    return 0
