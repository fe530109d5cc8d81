"""Benchmark baseline: a stock ``kserve.ModelServer`` custom model calling the MLflow pyfunc.

Everything KServe does by default stays on (access log, timing middleware, latency log line,
per-stage histograms); only the bind address is loopback and gRPC is off (both bind all
interfaces by default). The model's XGBoost booster gets one thread, as in Tidemill.
Request: ``{"instances": [{"unique_id", "ds": [...], "y": [...]}]}``.

    python bench/serving_stock_kserve.py --model-uri models:/NAME/1 --port P --workers 2
"""

from __future__ import annotations

import argparse
from typing import Any

import kserve
import mlflow.pyfunc
import pandas as pd
import uvicorn
from kserve.protocol.rest import server as rest_server


class LoopbackConfig(uvicorn.Config):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


class PyfuncModel(kserve.Model):
    def __init__(self, name: str, model_uri: str) -> None:
        super().__init__(name)
        self.model_uri = model_uri
        self.python_model: Any = None

    def load(self) -> bool:
        # The pyfunc's own model: mlflow's signature enforcement would drop ``unique_id``.
        self.python_model = mlflow.pyfunc.load_model(self.model_uri).unwrap_python_model()
        # One XGBoost thread per worker, as Tidemill serves: two workers x two OpenMP threads
        # on two cores spin against each other (requests then take seconds).
        self.python_model.bundle.forecaster.booster.set_param({"nthread": 1})
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict[str, Any]:
        """Worker processes reload the model (a pickled booster loses its thread setting)."""
        return {k: v for k, v in self.__dict__.items() if k != "python_model"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        frames = [pd.DataFrame({"unique_id": inst.get("unique_id", i), "ds": inst["ds"],
                                "y": inst["y"]}) for i, inst in enumerate(payload["instances"])]
        out = self.python_model.predict(None, pd.concat(frames, ignore_index=True),
                                        params={"horizon": 1})
        out["ds"] = out["ds"].astype(str)
        return {"predictions": out.to_dict(orient="records")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args, _ = parser.parse_known_args()
    rest_server.uvicorn.Config = LoopbackConfig
    model = PyfuncModel("stock", args.model_uri)
    model.load()
    kserve.ModelServer(http_port=args.port, workers=args.workers, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
