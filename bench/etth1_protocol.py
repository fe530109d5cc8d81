"""ETTh1 univariate benchmark (issue 2): every algorithm at the published protocol.

Protocol (Informer / LTSF-Linear, setting 'S'): target OT; rows [0, 8640) train, the next 2880
validation, the next 2880 test; StandardScaler fitted on train; MSE and MAE on scaled values
over stride-1 test windows (origins 11520 .. 14400 - h, lookback context from before 11520).
Each model goes through the pipeline's code path: ``build_model``, ``fit`` on the training
rows, ``calibrate`` on validation origins, ``forecast_origins`` on test origins.

Also reported: WAPE of the 1st and 24th forecast step in original units, coverage of the
level-0.9 interval, and wall time per stage. Repeat-last is ``seasonal_naive`` with season 1.

    .venv/orchestrator/bin/python bench/etth1_protocol.py --write-results
    .venv/orchestrator/bin/python bench/etth1_protocol.py --quick
    .venv/orchestrator/bin/python bench/etth1_protocol.py --algorithms nlinear --horizons 96 \
        --param nlinear.alpha=1000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import PreprocessConfig
from pipelines.evaluation import actual_windows, coverage, mae, mse, wape
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "ETTh1.csv"
RESULTS = REPO / "bench" / "RESULTS.md"
PYTHON = ".venv/orchestrator/bin/python"
SECTION = "## Training: ETTh1 protocol"
TRAIN_END, VAL_END, TEST_END = 8640, 11520, 14400
HORIZONS = (24, 96, 192, 336, 720)
LEVEL = 0.9
TRAINED = ("nlinear", "arima", "xgboost", "lstm")
# Baselines always run (the ratios need them): label -> (registry name, params).
BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "repeat_last": ("seasonal_naive", {"season": 1}),
    "seasonal_naive": ("seasonal_naive", {"season": 24}),
}
QUICK_HORIZONS = (24, 96)
QUICK_PARAMS = {"lstm": {"epochs": 2}}
WAPE1_TARGET = 5.0
# Known structural reasons for a model losing to the baselines, printed when it does.
MISS_CAUSES = {
    "xgboost": "it is recursive: its one-step forecast of the change is fed back as input "
    "h times, so errors compound and the forecast drifts over hundreds of steps",
}
# Zeng et al. 2023 ("Are Transformers Effective for Time Series Forecasting?"), univariate
# ETTh1 (setting 'S'), scaled MSE / MAE. No 24-step figures are published there.
PUBLISHED: dict[str, dict[int, tuple[float, float]]] = {
    "NLinear": {96: (0.053, 0.177), 192: (0.069, 0.204), 336: (0.081, 0.226), 720: (0.080, 0.226)},
    "DLinear": {96: (0.056, 0.180), 192: (0.071, 0.204), 336: (0.098, 0.244), 720: (0.189, 0.359)},
    "Repeat": {96: (0.069, 0.203)},
}


@dataclass
class Series:
    """The OT series in original and scaled units, with timestamps and the fitted scaler."""

    raw: np.ndarray
    y: np.ndarray
    ds: np.ndarray
    pre: Preprocessor


@dataclass
class Row:
    """Scores and stage timings of one (algorithm, horizon)."""

    algorithm: str
    horizon: int
    mse: float
    mae: float
    wape1: float
    wape24: float | None
    coverage: float
    fit_s: float
    calibrate_s: float
    forecast_s: float


def load_series() -> Series:
    """Rows [0, 14400) of OT, scaled by a Preprocessor fitted on the training rows."""
    df = pd.read_csv(DATA, usecols=["date", "OT"]).iloc[:TEST_END]
    long = pd.DataFrame(
        {"unique_id": "ETTh1", "ds": pd.to_datetime(df["date"]), "y": df["OT"].astype(float)}
    )
    pre = Preprocessor(PreprocessConfig(scaler="standard")).fit(long.iloc[:TRAIN_END])
    raw = long["y"].to_numpy(float)
    return Series(raw, pre.transform_target(raw), long["ds"].to_numpy(), pre)


def run_one(
    label: str, name: str, params: dict[str, Any], horizon: int, data: Series, seed: int
) -> Row:
    """Fit on train, calibrate on validation origins, score every stride-1 test window."""
    tag = f"[{label} h={horizon}]"
    model = build_model(name, horizon, level=LEVEL, seed=seed, **params)
    started = time.perf_counter()
    model.fit(data.y[:TRAIN_END], data.ds[:TRAIN_END])
    fit_s = time.perf_counter() - started
    print(f"{tag} fit {fit_s:.1f}s", flush=True)
    started = time.perf_counter()
    model.calibrate(data.y, np.arange(TRAIN_END, VAL_END - horizon + 1), data.ds)
    calibrate_s = time.perf_counter() - started
    print(f"{tag} calibrate {calibrate_s:.1f}s", flush=True)
    origins = np.arange(VAL_END, TEST_END - horizon + 1)
    started = time.perf_counter()
    point = model.forecast_origins(data.y, origins, data.ds)
    forecast_s = time.perf_counter() - started
    actual = actual_windows(data.y, origins, horizon)
    half = model.interval_halfwidth
    raw_actual = actual_windows(data.raw, origins, horizon)
    raw_point = data.pre.inverse_transform_target(point)

    def wape_at(step: int) -> float | None:
        if step > horizon:
            return None
        return float(wape(raw_actual[:, step - 1], raw_point[:, step - 1]))

    return Row(
        algorithm=label,
        horizon=horizon,
        mse=float(mse(actual, point)),
        mae=float(mae(actual, point)),
        wape1=wape_at(1),
        wape24=wape_at(24),
        coverage=float(coverage(actual, point - half, point + half)),
        fit_s=fit_s,
        calibrate_s=calibrate_s,
        forecast_s=forecast_s,
    )


def wape1_oracle(data: Series, horizon: int, lookback: int = 336) -> float:
    """WAPE@1 (%) over the test windows of ``horizon`` of an in-sample oracle: a linear
    AR(lookback) on the last value, fitted by least squares on those very windows."""
    origins = np.arange(VAL_END, TEST_END - horizon + 1)
    last = data.raw[origins - 1]
    lags = np.stack([data.raw[origins - k] - last for k in range(2, lookback + 1)], axis=1)
    design = np.column_stack([np.ones(len(origins)), lags])
    coef, *_ = np.linalg.lstsq(design, data.raw[origins] - last, rcond=None)
    return float(wape(data.raw[origins], last + design @ coef))


def change_spread(data: Series) -> tuple[float, float]:
    """Std of the scaled one-hour change of OT over the validation and the test rows."""
    change = np.diff(data.y)
    return float(change[TRAIN_END:VAL_END].std()), float(change[VAL_END : TEST_END - 1].std())


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["lstm.epochs=5", ...]`` -> ``{"lstm": {"epochs": 5}}`` (values parsed as JSON)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        algo, dot, param = key.partition(".")
        if not (sep and dot and algo and param):
            raise SystemExit(f"--param wants ALGO.NAME=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(algo, {})[param] = parsed
    return out


def fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def results_table(rows: list[Row]) -> str:
    """Markdown table with ratios against repeat-last and seasonal-naive at the same horizon."""
    base = {(r.algorithm, r.horizon): r.mse for r in rows}
    lines = [
        "| algorithm | horizon | MSE | MAE | vs repeat-last MSE | vs seasonal-naive MSE "
        "| WAPE@1 % | WAPE@24 % | coverage (0.9) | fit s | calibrate s | forecast s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r.horizon):
        lines.append(
            f"| {r.algorithm} | {r.horizon} | {r.mse:.4f} | {r.mae:.4f} "
            f"| {r.mse / base['repeat_last', r.horizon]:.3f} "
            f"| {r.mse / base['seasonal_naive', r.horizon]:.3f} "
            f"| {fmt(r.wape1, 2)} | {fmt(r.wape24, 2)} | {r.coverage:.3f} "
            f"| {r.fit_s:.1f} | {r.calibrate_s:.1f} | {r.forecast_s:.1f} |"
        )
    return "\n".join(lines)


def published_table() -> str:
    lines = ["| published (Zeng et al. 2023) | horizon | MSE | MAE |", "|---|---:|---:|---:|"]
    for model, scores in PUBLISHED.items():
        for horizon, (m_se, m_ae) in scores.items():
            lines.append(f"| {model} | {horizon} | {m_se:.3f} | {m_ae:.3f} |")
    return "\n".join(lines)


def target_lines(
    rows: list[Row], oracle: dict[int, float], spread: tuple[float, float]
) -> list[str]:
    """One verdict per target of the issue, with the figures behind it."""
    trained = [r for r in rows if r.algorithm not in BASELINES]
    if not trained:
        return ["- no trained algorithm ran: targets not evaluated"]
    base = {(r.algorithm, r.horizon): r.mse for r in rows}
    out = []
    for horizon in sorted({r.horizon for r in trained}):
        at = [r for r in trained if r.horizon == horizon]
        best = min(at, key=lambda r: r.mse)
        refs = [(m, s[horizon]) for m, s in PUBLISHED.items() if horizon in s and m != "Repeat"]
        if not refs:
            out.append(
                f"- h={horizon}: best {best.algorithm} {best.mse:.4f} / {best.mae:.4f} "
                "(no published figure)"
            )
            continue
        ref_model, (ref_mse, ref_mae) = min(refs, key=lambda item: item[1][0])
        met = round(best.mse, 3) <= ref_mse and round(best.mae, 3) <= ref_mae
        out.append(
            f"- h={horizon}: best {best.algorithm} {best.mse:.4f} / {best.mae:.4f} vs best "
            f"published {ref_model} {ref_mse:.3f} / {ref_mae:.3f}: "
            f"{'met' if met else 'MISSED'} (compared at 3 decimals)"
        )
    losers = [r for r in trained if any(r.mse >= base[b, r.horizon] for b in BASELINES)]
    verdict = "met"
    if losers:
        verdict = "MISSED by " + "; ".join(
            f"{r.algorithm} h={r.horizon} (MSE ratio "
            + ", ".join(f"{b} {r.mse / base[b, r.horizon]:.3f}" for b in BASELINES)
            + ")"
            for r in losers
        )
        for algo in sorted({r.algorithm for r in losers} & MISS_CAUSES.keys()):
            verdict += f". Why, {algo}: {MISS_CAUSES[algo]}"
    out.append(f"- every trained model beats repeat-last and seasonal-naive (MSE): {verdict}")
    ok = [f"{r.algorithm} h={r.horizon}" for r in trained if r.wape1 < WAPE1_TARGET]
    out.append(
        f"- WAPE@1 < {WAPE1_TARGET:g}%: "
        + (f"met by {', '.join(ok)}" if ok else "MISSED by every model")
        + ". The one-hour change of OT is mostly noise to a univariate model: per horizon, "
        "best WAPE@1 vs an in-sample oracle (AR(336) fitted by least squares on the same "
        "test windows): "
        + "; ".join(
            f"h={h} {min(r.wape1 for r in trained if r.horizon == h):.2f}% vs {oracle[h]:.2f}%"
            for h in sorted(oracle)
        )
    )
    out.append(
        "- coverage (not a target): the 0.9 intervals are sized on earlier, more volatile data "
        f"(std of the scaled hourly change: validation {spread[0]:.4f}, test {spread[1]:.4f}), "
        "so they over-cover on test"
    )
    return out


def write_section(path: Path, body: str) -> None:
    """Replace this benchmark's section of ``path`` (or append it) up to the next ``## `` or
    ``### `` heading; keep the others and the section's subsections intact."""
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmarks"]
    new = [SECTION, "", *body.rstrip().splitlines(), ""]
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))),
            len(lines),
        )
        lines[start:end] = new
    else:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *new]
    path.write_text("\n".join(lines).rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--algorithms",
        nargs="+",
        choices=TRAINED,
        default=list(TRAINED),
        help="trained algorithms to run; repeat-last and seasonal-naive always run",
    )
    parser.add_argument("--horizons", nargs="+", type=int, help=f"default {HORIZONS}")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="ALGO.NAME=VALUE",
        help="hyper-parameter override passed to build_model (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: horizons {QUICK_HORIZONS} and {QUICK_PARAMS} unless overridden",
    )
    parser.add_argument(
        "--write-results", action="store_true", help=f"write the section into {RESULTS}"
    )
    args = parser.parse_args()
    horizons = args.horizons or list(QUICK_HORIZONS if args.quick else HORIZONS)
    overrides = parse_params(args.param)
    params = {
        algo: (QUICK_PARAMS.get(algo, {}) if args.quick else {}) | overrides.get(algo, {})
        for algo in args.algorithms
    }
    command = shlex.join([PYTHON, "bench/etth1_protocol.py", *sys.argv[1:]])
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")

    started = time.perf_counter()
    data = load_series()
    print(f"[data] load + scale {time.perf_counter() - started:.2f}s", flush=True)
    jobs = [(label, name, dict(p)) for label, (name, p) in BASELINES.items()]
    jobs += [(algo, algo, params[algo]) for algo in args.algorithms]
    rows = []
    for horizon in horizons:
        for label, name, job_params in jobs:
            row = run_one(label, name, job_params, horizon, data, args.seed)
            rows.append(row)
            print(
                f"{label:>14} h={horizon:<3} MSE {row.mse:.4f} MAE {row.mae:.4f} "
                f"WAPE@1 {row.wape1:.2f}% WAPE@24 {fmt(row.wape24, 2)}% "
                f"coverage {row.coverage:.3f} fit {row.fit_s:.1f}s "
                f"calibrate {row.calibrate_s:.1f}s forecast {row.forecast_s:.1f}s",
                flush=True,
            )
    oracle = {h: wape1_oracle(data, h) for h in horizons}
    total_s = time.perf_counter() - started
    load_end = os.getloadavg()

    used = {algo: p for algo, p in params.items() if p}
    body = "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Machine: "
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores (shared), Python "
            f"{platform.python_version()}. Load average (1/5/15 min) at start "
            f"{load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, at end "
            f"{load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}. Total wall time "
            f"{total_s:.0f} s.",
            "",
            "Protocol: OT only; rows [0, 8640) train, [8640, 11520) validation, [11520, 14400) "
            "test; StandardScaler fitted on train; MSE/MAE on scaled values over every stride-1 "
            "test window (origins 11520 .. 14400 - h). Intervals: level 0.9, conformal on "
            "validation origins 8640 .. 11520 - h (ARIMA: its own Gaussian intervals); coverage "
            "over all test windows and steps. WAPE@k: the k-th forecast step over all test "
            "windows, original units. Ratios: MSE / the baseline's MSE at the same horizon. "
            "repeat-last = seasonal_naive with season 1. Hyper-parameters: model defaults"
            + (f", except {json.dumps(used)}" if used else "")
            + f"; seed {args.seed}.",
            "",
            results_table(rows),
            "",
            published_table(),
            "",
            "Targets:",
            "",
            *target_lines(rows, oracle, change_spread(data)),
        ]
    )
    print()
    print(body)
    if args.write_results:
        write_section(RESULTS, body)
        print(f"\nwrote the '{SECTION}' section of {RESULTS}")


if __name__ == "__main__":
    main()
