"""The promote_challenger job: evidence, decision, and the registry + serving change.

Called by the ``promote_challenger`` DAG (after training registers a challenger) and by the
``drift_monitor`` DAG's rollback watch; usable without Airflow. Every registry and split change
goes through ``serving.split.SplitControl`` (the same code path as the control API), so the
local router or the KServe InferenceService follows the aliases.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from monitoring.drift_job import current_window
from pipelines.config import load_config
from pipelines.home import TidemillHome
from pipelines.promotion import (
    PromotionPolicy,
    compare_backtest,
    decide,
    live_evidence,
    season_of_freq,
    series_scales,
)
from pipelines.registry import CHALLENGER, CHAMPION, load_registered_bundle, tracking_uri
from pipelines.settings import Settings
from serving.prediction_log.reader import forecast_points, joined_errors
from serving.prediction_log.schema import engine_for
from serving.split import SplitControl, backend_from_env

PROMOTED_AT_TAG = "tidemill.promoted_at"


def _control(config_path: str | Path, home: TidemillHome) -> tuple[SplitControl, str]:
    cfg = load_config(config_path)
    uri = tracking_uri(cfg, home)
    client = MlflowClient(uri, registry_uri=uri)
    name = cfg.mlflow.registered_model_name
    return SplitControl(client, name, backend_from_env(home, name)), uri


def _say(msg: str) -> None:
    print(f"[tidemill] {msg}", flush=True)


def promotion_config(events: list[dict[str, Any]], default: str) -> str:
    """The experiment config of the registration to judge: the latest triggering Asset
    event's ``config`` (the effective config its training run wrote), else ``default``
    (the trigger form's, for a manual run)."""
    if not events:
        _say(f"promote_challenger: no triggering registration; config {default}")
        return default
    extra = events[-1]
    if not extra.get("config"):
        raise ValueError(
            f"the model Asset event of {extra.get('name')!r} v{extra.get('version')} names no "
            f"config in its extra ({sorted(extra)}); trigger promote_challenger with a config"
        )
    _say(f"promote_challenger: {extra.get('name')} v{extra.get('version')} registered with "
         f"config {extra['config']}")  # fmt: skip
    return str(extra["config"])


def evaluate_challenger(
    config_path: str | Path,
    home: TidemillHome,
    policy: PromotionPolicy,
    canary_percent: int = 10,
    since_hours: float = 24 * 7,
    current_path: str | Path | None = None,
) -> dict[str, Any]:
    """Put the challenger into serving at ``canary_percent`` and weigh the evidence."""
    control, uri = _control(config_path, home)
    aliases = control.alias_versions()
    champion, challenger = aliases[CHAMPION], aliases[CHALLENGER]
    if challenger is None or challenger == champion:
        _say(f"promote_challenger: nothing to compare (champion v{champion}, no challenger)")
        return {
            "champion": champion,
            "challenger": None,
            "promote": False,
            "reason": "no challenger distinct from the champion",
        }
    control.sync(canary_percent)
    name = control.model_name
    champ = load_registered_bundle(uri, name, champion)
    chall = load_registered_bundle(uri, name, challenger)
    rows = (
        policy.backtest_rows
        + max(champ.min_history, chall.min_history)
        + max(champ.horizon, chall.horizon)
    )
    series = current_window(config_path, rows, current_path)
    backtest, mae = compare_backtest(champ, chall, series, policy)
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=since_hours)
    log_url = Settings.resolve(home).prediction_log_url
    points = forecast_points(engine_for(log_url), since, model_name=name)
    points = points[points["model_version"].isin({champion, challenger})].dropna(subset=["y"])
    panel = series["unique_id"].nunique() > 1
    scales = series_scales(series, season_of_freq(champ.freq), {}) if panel else None
    evidence = decide(backtest, live_evidence(points, policy, scales), mae)
    verdict = "promote" if evidence.promote else "keep champion"
    _say(
        f"promote_challenger: v{challenger} vs champion v{champion}: {verdict} - {evidence.reason}"
    )
    return {"champion": champion, "challenger": challenger, **evidence.as_dict()}


def apply_decision(
    config_path: str | Path, home: TidemillHome, evaluation: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Promote, keep or archive the challenger, recording who, why and the evidence as tags."""
    challenger = evaluation.get("challenger")
    if not challenger:
        return {"action": "none", "reason": evaluation["reason"]}
    control, _ = _control(config_path, home)
    client, name = control.client, control.model_name
    evidence = json.dumps({k: evaluation[k] for k in ("backtest", "live", "backtest_mae")})
    tags = {
        "tidemill.promotion_decided_by": actor,
        "tidemill.promotion_reason": evaluation["reason"][:4900],
        "tidemill.promotion_evidence": evidence[:4900],
    }
    if evaluation["promote"]:
        control.promote()
        tags[PROMOTED_AT_TAG] = str(int(time.time()))
        action = "promoted"
    elif (evaluation["backtest"]["mean_loss_diff"] or 0.0) < 0:
        control.retire_challenger()
        action = "archived"
    else:
        action = "kept as challenger"
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    _say(f"promote_challenger: version {challenger} {action}")
    return {"action": action, "version": challenger, "reason": evaluation["reason"]}


def rollback_watch(
    config_path: str | Path,
    home: TidemillHome,
    watch_hours: float = 48,
    margin: float = 0.25,
    min_points: int = 24,
) -> dict[str, Any]:
    """Roll a freshly promoted champion back when its live MAE exceeds its validation MAE by
    more than ``margin`` within ``watch_hours`` of the promotion."""
    control, _ = _control(config_path, home)
    client, name = control.client, control.model_name
    champion = control.alias_versions()[CHAMPION]
    if champion is None:
        return {"action": "none", "reason": "no champion"}
    mv = client.get_model_version(name, champion)
    promoted_at = mv.tags.get(PROMOTED_AT_TAG)
    if promoted_at is None or time.time() - int(promoted_at) > watch_hours * 3600:
        return {"action": "none", "reason": f"champion v{champion} is not in a watch window"}
    since = datetime.fromtimestamp(int(promoted_at), UTC).replace(tzinfo=None)
    log_url = Settings.resolve(home).prediction_log_url
    live = joined_errors(engine_for(log_url), since, model_name=name)
    stats = live.get(CHAMPION)
    val_mae = client.get_run(mv.run_id).data.metrics.get("val_mae")
    if stats is None or stats["points"] < min_points or val_mae is None:
        n = 0 if stats is None else stats["points"]
        return {
            "action": "none",
            "reason": f"{n} live actuals for v{champion}, {min_points} needed",
        }
    limit = val_mae * (1 + margin)
    if stats["mae"] <= limit:
        return {"action": "none", "reason": f"live MAE {stats['mae']:.4g} within {limit:.4g}"}
    reason = (
        f"live MAE {stats['mae']:.4g} over {stats['points']} points exceeds validation "
        f"MAE {val_mae:.4g} by more than {margin:.0%} within {watch_hours:g} h of "
        "promotion"
    )
    control.rollback()
    client.set_model_version_tag(name, champion, "tidemill.rolled_back", reason)
    _say(f"rollback_watch: champion v{champion} rolled back: {reason}")
    return {"action": "rolled back", "version": champion, "reason": reason}
