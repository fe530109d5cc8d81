"""The Grafana dashboard: valid JSON, the required panels, and PromQL a real Prometheus accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitoring.drift import DriftResult
from monitoring.drift_metrics import write_drift_metrics
from monitoring.prometheus import PrometheusServer, render_config
from pipelines import artifact_store

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "monitoring" / "grafana" / "tidemill-dashboard.json").read_text())
SERVING_METRICS = {
    "tidemill_requests_total",
    "tidemill_request_latency_seconds_bucket",
    "tidemill_errors_total",
    "tidemill_prediction_value_bucket",
    "tidemill_prediction_log_queue_depth",
    "tidemill_prediction_log_rows_total",
}


def panels() -> list[dict]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    return exprs + [a["expr"] for a in DASHBOARD["annotations"]["list"]]


def drift_metric_names(drifted: DriftResult, tmp_path: Path) -> set[str]:
    text = artifact_store.read_text(
        write_drift_metrics(drifted, str(tmp_path), model="m", version="1"))
    return {f.name for f in text_string_to_metric_families(text)}


def test_panels_cover_the_required_views() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"].lower() for p in panels())
    for needed in (
        "requests",
        "latency",
        "error",
        "live mae per variant",
        "drift score",
        "coverage",
        "model versions in service",
    ):
        assert needed in titles, needed
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


def test_queries_use_only_known_metrics(drifted: DriftResult, tmp_path: Path) -> None:
    known = SERVING_METRICS | drift_metric_names(drifted, tmp_path) | {"ALERTS"}
    used = set()
    for expr in expressions():
        bare = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", "", expr)
        used |= {
            w
            for w in re.findall(r"[A-Za-z_:][\w:]*", bare)
            if w.startswith(("tidemill_", "ALERTS"))
        }
    assert used <= known, sorted(used - known)
    assert {"tidemill_drift_score", "tidemill_interval_coverage", "tidemill_live_abs_error"} <= used
    assert used >= SERVING_METRICS


def test_queries_parse_in_prometheus(prometheus_bin: dict[str, str], tmp_path: Path) -> None:
    config = render_config({})
    with PrometheusServer.start(config, tmp_path, binary=prometheus_bin["prometheus"]) as prom:
        for expr in expressions():
            prom.query(expr.replace("$model", ".*"))  # raises on a syntax error
