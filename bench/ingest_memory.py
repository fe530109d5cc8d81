"""Ingest memory: the ingest stage alone (``workflow.ingest``: read, validate, snapshot) on a
``bench/scale.py`` synthetic panel, with the process's RSS sampled every 20 ms and the
pipeline line it was at when it peaked. The panel is written by a child process first, so the
peak is ingest's. Run it with ``MALLOC_MMAP_THRESHOLD_=131072`` so freed arrays go back to the
system and RSS follows live memory.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/orchestrator/bin/python bench/ingest_memory.py \
        --series 10000
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
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10000)
    parser.add_argument("--hours", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidemill-ingest-") as tmp:
        source = Path(tmp) / "panel.parquet"
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from scale import synthetic_panel; synthetic_panel(int(sys.argv[2]), "
                        "int(sys.argv[3])).to_parquet(sys.argv[4], index=False)",
                        str(REPO / "bench"), str(args.series), str(args.hours), str(source)],
                       check=True)  # fmt: skip
        config = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
        config["data"]["source"]["path"] = str(source)
        config["algorithms"] = {  # bench/scale.py's: they set the history validation needs
            "seasonal_naive": {"params": {"season": 24}},
            "nlinear": {"params": {"lookback": 168}},
            "lightgbm": {"params": {"lookback": 168, "n_estimators": 100}},
        }
        config["ensemble"] = {"enabled": False}
        (Path(tmp) / "panel.yaml").write_text(yaml.safe_dump(config))
        from pipelines import workflow

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
        workflow.ingest(Path(tmp) / "panel.yaml", str(Path(tmp) / "run"))
        done.set()
        sampler.join()
    print(json.dumps({"series": args.series, "rows": args.series * args.hours,
                      "wall_s": round(time.perf_counter() - started, 1), "rss_before_mib": base,
                      "peak_rss_mib": peak["mib"], "peak_at": peak["at"]}))  # fmt: skip


if __name__ == "__main__":
    main()
