"""The Kubernetes predictor: ``python -m serving.predictor`` serves one registered version.

KServe mounts the InferenceService's ``storageUri`` at ``TIDEMILL_MODEL_DIR`` (``/mnt/models``:
``MLmodel`` + ``artifacts/bundle/``, or a bare bundle); KServe itself splits traffic between the
champion and challenger predictors. Binds ``--host`` (0.0.0.0 in a pod, where the kubelet and
the queue proxy connect; use 127.0.0.1 on a workstation), REST on ``--port`` (8080).

Served predictions reach the prediction log through KServe's ``logger`` (CloudEvents posted to
the control API's ``/prediction-log``); with ``TIDEMILL_PREDICTION_LOG_URL`` set the predictor
also writes them itself.
"""

from __future__ import annotations

import argparse
import os

from serving.config import model_name
from serving.forecast_model import TidemillPredictor
from serving.server import TidemillModelServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.predictor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=os.environ.get("TIDEMILL_MODEL_DIR", "/mnt/models"))
    parser.add_argument("--model-name", default=model_name(), help="endpoint name")
    parser.add_argument("--variant", default=None, help="label in responses (TIDEMILL_VARIANT)")
    parser.add_argument("--host", default=os.environ.get("TIDEMILL_BIND_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    args, _ = parser.parse_known_args(argv)
    predictor = TidemillPredictor(args.model_name, args.model_dir, args.variant)
    predictor.load()
    TidemillModelServer(host=args.host, http_port=args.port, workers=args.workers).start(
        [predictor])


if __name__ == "__main__":
    main()
