"""The Prometheus helpers against a real server scraping a prometheus_client endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from monitoring.drift import DriftResult
from monitoring.drift_metrics import write_drift_metrics
from monitoring.prometheus import PrometheusServer, render_config
from serving.textfile_metrics import TextfileCollector

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "alerts" / "tidemill-rules.yaml"


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[str, Gauge, Path]]:
    """A prometheus_client endpoint on 127.0.0.1 serving a test gauge and the drift files."""
    registry = CollectorRegistry()
    gauge = Gauge("tidemill_test_value", "A value the test sets", ["kind"], registry=registry)
    gauge.labels("a").set(42)
    drift_dir = tmp_path / "metrics"
    registry.register(TextfileCollector(drift_dir))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{server.server_port}", gauge, drift_dir
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_render_config_for_loopback_targets(tmp_path: Path) -> None:
    text = render_config(
        {"serving": ["127.0.0.1:8080"], "control": ["[::1]:9000"]}, rule_files=[RULES]
    )
    config = yaml.safe_load(text)
    assert config["global"]["scrape_interval"] == "1s"
    assert config["rule_files"] == [str(RULES)]
    assert [j["job_name"] for j in config["scrape_configs"]] == ["serving", "control"]
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:8080"]}]
    for bad in ("0.0.0.0:9090", "example.com:80", "10.0.0.1:9090"):
        with pytest.raises(ValueError, match="not a loopback"):
            render_config({"x": [bad]})


def test_prometheus_scrapes_and_answers_queries(
    prometheus_bin: dict[str, str], exporter, tmp_path: Path
) -> None:
    target, gauge, _ = exporter
    config = render_config({"app": [target]})
    with PrometheusServer.start(
        config, tmp_path / "prom", binary=prometheus_bin["prometheus"]
    ) as prom:
        assert prom.url.startswith("http://127.0.0.1:")
        [sample] = prom.wait_for('tidemill_test_value{kind="a"}')
        assert sample["value"] == 42 and sample["metric"]["job"] == "app"
        gauge.labels("a").set(7)
        prom.wait_for('tidemill_test_value{kind="a"}', lambda r: r and r[0]["value"] == 7)
        [up] = prom.query('up{job="app"}')
        assert up["value"] == 1.0
        [t] = prom.targets()
        assert t["health"] == "up" and t["scrapeUrl"] == f"http://{target}/metrics"
        assert prom.query("vector(3)") == [{"metric": {}, "value": 3.0}]
        assert prom.query("scalar(vector(2))") == [{"metric": {}, "value": 2.0}]
    assert prom.process.poll() is not None
    with pytest.raises(OSError):
        prom.query("up")


def test_drift_gauges_fire_the_alert_in_a_real_prometheus(
    prometheus_bin: dict[str, str], exporter, drifted: DriftResult, tmp_path: Path
) -> None:
    target, _, drift_dir = exporter
    write_drift_metrics(drifted, drift_dir, model="m", version="3")
    config = render_config({"control": [target]}, rule_files=[RULES])
    with PrometheusServer.start(
        config, tmp_path / "prom", binary=prometheus_bin["prometheus"]
    ) as prom:
        groups = prom.api("rules")["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"]}
        assert {"TidemillDriftDetected", "TidemillCoverageOutOfBand"} <= loaded
        [alert] = prom.wait_for('ALERTS{alertname="TidemillDriftDetected",alertstate="firing"}')
        assert alert["metric"]["model"] == "m" and alert["metric"]["version"] == "3"
        [share] = prom.query("tidemill_drift_share")
        assert share["value"] == 1.0


def test_start_failure_reports_the_log(prometheus_bin: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="prometheus exited"):
        PrometheusServer.start(
            "global: [not, a, mapping", tmp_path, binary=prometheus_bin["prometheus"]
        )
    with pytest.raises(FileNotFoundError, match="install-prometheus"):
        PrometheusServer.start("{}", tmp_path, binary="no-such-prometheus")

