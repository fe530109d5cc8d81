"""XGBoost's fit from chunks (``WindowChunks`` into a ``QuantileDMatrix``, the model's path)
beside the former path (one float32 ``DMatrix`` of every training row), alternating in one
process on a ``bench/scale.py`` synthetic panel (lookback 168, 100 trees, calendar columns, each
series scaled): CPU and wall seconds of each fit and of building its training rows within it,
the ratio of their CPU, and whether the boosters are byte for byte the same. One JSON line.

    nice -n 10 .venv/orchestrator/bin/python bench/xgboost_paths.py --series 2000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import xgboost as xgb
from scale import synthetic_panel  # bench/, the script's directory

from pipelines.models.xgboost_model import XGBoostForecaster


class ChunkedXGBoost(XGBoostForecaster):
    """The model's path, counting the CPU seconds spent building training rows."""

    rows_cpu_s = 0.0

    def chunk_rows(self, fn: Any, work: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray]:
        spent = time.process_time()
        try:
            return super().chunk_rows(fn, work)
        finally:
            self.rows_cpu_s += time.process_time() - spent


class MatrixXGBoost(ChunkedXGBoost):
    """The former path: every training row in one float32 matrix, then a ``DMatrix`` of it."""

    def _fit_rows(self, fn: Any, work: list[tuple[Any, ...]], sizes: list[int]) -> Any:
        features, target = self.chunk_rows(fn, work)
        data = xgb.DMatrix(features.astype(np.float32), label=target)
        del features
        rounds = int(self.params.get("n_estimators", 200))
        return xgb.train(self._booster_params(), data, num_boost_round=rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--hours", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = synthetic_panel(args.series, args.hours)
    groups = data.groupby("unique_id", sort=False)
    ys = [(v - v.mean()) / (v.std() or 1.0) for v in (g.to_numpy(float) for _, g in groups["y"])]
    dss = [g.to_numpy("datetime64[ns]") for _, g in groups["ds"]]
    del data, groups
    cpu: dict[str, list[float]] = {"matrix": [], "chunks": []}
    wall: dict[str, list[float]] = {"matrix": [], "chunks": []}
    rows: dict[str, list[float]] = {"matrix": [], "chunks": []}
    boosters = set()
    for _ in range(args.repeats):
        for name, cls in (("matrix", MatrixXGBoost), ("chunks", ChunkedXGBoost)):
            model = cls(48, lookback=168, n_estimators=100, calendar=True)
            started, spent = time.perf_counter(), time.process_time()
            model.fit(ys, dss)
            cpu[name].append(round(time.process_time() - spent, 1))
            wall[name].append(round(time.perf_counter() - started, 1))
            rows[name].append(round(model.rows_cpu_s, 1))
            boosters.add(bytes(model.booster.save_raw("ubj")))
    print(json.dumps({"series": args.series, "fit_cpu_s": cpu, "fit_wall_s": wall,
                      "building_rows_cpu_s": rows,
                      "cpu_chunks_over_matrix": round(sum(cpu["chunks"]) / sum(cpu["matrix"]), 3),
                      "boosters_identical": len(boosters) == 1}))  # fmt: skip


if __name__ == "__main__":
    main()
