"""Ingest memory: the ingest stage alone (``workflow.ingest``: read, validate, snapshot) on a
``bench/scale.py`` synthetic panel, with the process's RSS sampled every 20 ms and the
pipeline line it was at when it peaked. The panel is written by a child process first, so the
peak is ingest's. ``--stage preprocess`` samples the preprocess stage instead (after an
unsampled ingest: split, scaler, the prepared Parquet) and ``--stage read`` the prepared
panel read back as the per-series arrays every tune and train stage builds
(``panel.read_prepared``, with the regressors of the config). Run it with
``MALLOC_MMAP_THRESHOLD_=131072`` so freed arrays go back to the system and RSS follows live
memory. It also prints the RSS while the stage's result is still held.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/orchestrator/bin/python bench/ingest_memory.py \
        --series 10000 [--stage preprocess|read]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from scale import scale_config  # bench/, the script's directory

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def stage(name: str, config: Path, run_dir: str) -> Callable[[], Any]:
    """The stage ``name`` to measure, the stages before it run (unmeasured)."""
    from pipelines import panel, workflow
    from pipelines.exogenous import ExogSpec

    if name == "ingest":
        return lambda: workflow.ingest(config, run_dir)
    ingested = workflow.ingest(config, run_dir)
    if name == "preprocess":
        return lambda: workflow.preprocess(ingested, run_dir)
    prepared = workflow.preprocess(ingested, run_dir)
    spec = ExogSpec.from_config(workflow.run_config(prepared["config"]).data)
    return lambda: panel.read_prepared(prepared["prepared"], spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10000)
    parser.add_argument("--hours", type=int, default=400)
    parser.add_argument("--stage", choices=["ingest", "preprocess", "read"], default="ingest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidemill-ingest-") as tmp:
        source = Path(tmp) / "panel.parquet"
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from scale import synthetic_panel; synthetic_panel(int(sys.argv[2]), "
                        "int(sys.argv[3])).to_parquet(sys.argv[4], index=False)",
                        str(REPO / "bench"), str(args.series), str(args.hours), str(source)],
                       check=True)  # fmt: skip
        config = scale_config(source)  # bench/scale.py's: the history validation needs
        (Path(tmp) / "panel.yaml").write_text(yaml.safe_dump(config))
        measured = stage(args.stage, Path(tmp) / "panel.yaml", str(Path(tmp) / "run"))
        main_thread, peak = threading.main_thread().ident, {"mib": rss_mib(), "at": ""}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                now = rss_mib()
                if now > peak["mib"]:
                    frames = traceback.extract_stack(sys._current_frames()[main_thread])
                    ours = [f for f in frames if "/pipelines/" in f.filename][-3:]
                    peak["mib"] = now
                    peak["at"] = " < ".join(f"{Path(f.filename).name}:{f.lineno}"
                                            for f in reversed(ours))  # fmt: skip
                time.sleep(0.02)

        base = rss_mib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        result = measured()
        done.set()
        held = rss_mib()  # with the stage's result still held
        del result
        sampler.join()
    print(json.dumps({"stage": args.stage, "series": args.series, "rows": args.series * args.hours,
                      "wall_s": round(time.perf_counter() - started, 1), "rss_before_mib": base,
                      "peak_rss_mib": peak["mib"], "peak_at": peak["at"],
                      "rss_holding_result_mib": held}))  # fmt: skip


if __name__ == "__main__":
    main()
