"""Sample requests for ``tidemill demo``: several callers ask the local stack for a forecast,
and the answers of both variants are printed side by side. Needs only httpx (either venv).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx

from serving.config import DEFAULT_MODEL_NAME

MAX_CALLERS = 200


def run_demo(
    router_url: str = "http://127.0.0.1:8080",
    model_name: str = DEFAULT_MODEL_NAME,
    callers: Sequence[str] | None = None,
    horizon: int | None = None,
    out: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Send the model's example history from caller keys ``demo-user-1..`` (or ``callers``)
    until both variants answered (at least 8 callers, at most 200 when a challenger is live);
    print one line per answer and return them."""
    with httpx.Client(base_url=router_url, timeout=30.0) as client:
        meta = client.get(f"/v2/models/{model_name}").raise_for_status().json()
        live = set(meta.get("parameters", {}))
        body = client.get(f"/v1/models/{model_name}/example").raise_for_status().json()
        if horizon is not None:
            body["parameters"] = {"horizon": horizon}
        keys = list(callers) if callers else [f"demo-user-{i}" for i in range(1, MAX_CALLERS + 1)]
        answers: list[dict[str, Any]] = []
        for i, key in enumerate(keys):
            if not callers and i >= 8 and {a["variant"] for a in answers} >= live:
                break
            resp = client.post(f"/v1/models/{model_name}:predict", json={**body, "user_id": key})
            resp.raise_for_status()
            data = resp.json()
            pred = data["predictions"][0]
            answers.append({
                "caller": key, "variant": data["variant"], "model_version": data["model_version"],
                "request_id": data["request_id"], "timestamps": pred["timestamps"],
                "mean": pred["mean"], "lower": pred["lower"], "upper": pred["upper"],
            })
    out(f"{'caller':<16}{'variant':<12}{'version':>8}  first steps (mean [lower, upper])")
    for a in answers:
        steps = "  ".join(f"{m:.2f} [{lo:.2f}, {hi:.2f}]"
                          for m, lo, hi in list(zip(a["mean"], a["lower"], a["upper"],
                                                    strict=True))[:3])
        out(f"{a['caller']:<16}{a['variant']:<12}{a['model_version']:>8}  {steps}")
    served = sorted({(a["variant"], a["model_version"]) for a in answers})
    out("variants answering: " + ", ".join(f"{v} (v{ver})" for v, ver in served))
    return answers
