"""The control API's /metrics re-exports the gauges jobs wrote to <store>/metrics (drift)."""

from fastapi.testclient import TestClient

from pipelines.home import TidemillHome
from serving.control_api import ControlSettings, create_app


def test_control_api_reexports_drift_gauges(tmp_path):
    """The drift gauges a check wrote to <store>/metrics (the home by default) appear on the
    control API's /metrics."""
    home = TidemillHome.resolve(tmp_path / "home")
    home.metrics_dir.mkdir(parents=True)
    (home.metrics_dir / "drift-m.prom").write_text(
        "# HELP tidemill_drift_detected 1 when drift was detected\n"
        "# TYPE tidemill_drift_detected gauge\n"
        'tidemill_drift_detected{model="m",version="3"} 1.0\n'
    )
    settings = ControlSettings(None, home.mlflow_uri, home.prediction_log_uri, home,
                               str(home.metrics_dir))
    with TestClient(create_app(settings)) as client:
        body = client.get("/metrics").text
    assert 'tidemill_drift_detected{model="m",version="3"} 1.0' in body
    assert "tidemill_prediction_log_queue_depth" in body
