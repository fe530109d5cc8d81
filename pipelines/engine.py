"""Where per-series work runs: in this process (``local``, the default) or on Ray.

An experiment's ``engine:`` (``kind: ray``, ``address``) or ``TIDEMILL_ENGINE=ray`` fans work
out as Ray tasks: the fits and backtest forecasts of local models (one task per series), the
cross-validation folds of a trial, the Optuna trials of a study, and the feature rows of the
global tree models (``map_shards``: one task per shard of series). ``TIDEMILL_RAY_ADDRESS`` (or
``engine.address``) names a running cluster: ``ray://<head>:10001`` for a KubeRay head
service, ``auto`` for one started on this machine (``ray start --head``); without an address
the first fan-out starts a local Ray inside this process. What every task shares goes to Ray's
object store once (``ray.put``), not once per task. A task whose worker process dies (killed,
out of memory, its node lost) is run again, up to ``MAX_RETRIES`` times: every task is a pure
function of its inputs (a fit, a forecast, a fold's score; an Optuna trial records itself in
the study, see ``pipelines.tuning``), so a rerun gives the result the first try would have. A
task that raises fails the fan-out with its own error, not retried (it would raise again); a
fan-out that fails cancels its other tasks. A fan-out inside a task (a trial's folds, a fold's
per-series fits) runs in that task's process: the outermost level is the parallel one, so a
2-CPU machine is not asked for tasks within tasks.

Serving never fans out (the serving environment has no Ray): predictions stay in process.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, TypeVar

ENGINE_ENV = "TIDEMILL_ENGINE"
ADDRESS_ENV = "TIDEMILL_RAY_ADDRESS"
MAX_RETRIES = 3
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024  # a local Ray's object store (Ray's minimum: 78 MiB)

Item = TypeVar("Item")
Result = TypeVar("Result")


def configure(kind: str | None, address: str | None = None) -> None:
    """Make ``kind`` (``local`` or ``ray``) and ``address`` this process's engine (a task calls
    this with its experiment's ``engine:`` before it fits)."""
    if kind:
        os.environ[ENGINE_ENV] = kind
    if address:
        os.environ[ADDRESS_ENV] = address


def kind() -> str:
    chosen = os.environ.get(ENGINE_ENV) or "local"
    if chosen not in ("local", "ray"):
        raise ValueError(f"{ENGINE_ENV}={chosen!r}: the engine is 'local' or 'ray'")
    return chosen


def parallel() -> bool:
    """Whether a fan-out from here runs as Ray tasks (the engine is ``ray``, and this is not
    already a fan-out's task)."""
    return kind() == "ray" and not _in_task


def fan_out(fn: Callable[[Item, Any], Result], items: Sequence[Item], shared: Any = None
            ) -> list[Result]:  # fmt: skip
    """``[fn(item, shared) for item in items]``, on Ray when the engine is ``ray``."""
    if not parallel() or len(items) < 2:
        return [fn(item, shared) for item in items]
    ray = _connected()
    shared_ref = ray.put(pickle.dumps(shared))
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_call)
    refs = [task.remote(fn, pickle.dumps(item), shared_ref) for item in items]
    return [pickle.loads(result) for result in _gathered(ray, refs, fn)]


def _gathered(ray: Any, refs: list[Any], fn: Callable[..., Any]) -> list[bytes]:
    """The tasks' results in order. The first failure stops the fan-out: the other tasks are
    cancelled (nothing keeps running for a stage that failed) and a task whose worker died on
    every try is named."""
    index = {ref: k for k, ref in enumerate(refs)}
    results: list[bytes] = [b""] * len(refs)
    pending = list(refs)
    try:
        while pending:
            (done,), pending = ray.wait(pending, num_returns=1)
            results[index[done]] = ray.get(done)
    except ray.exceptions.WorkerCrashedError as exc:
        _cancel(ray, pending)
        raise RuntimeError(
            f"Ray task {index[done] + 1} of {len(refs)} ({fn.__module__}.{fn.__qualname__}): "
            f"its worker process died on each of {MAX_RETRIES + 1} tries (killed, or out of "
            "memory; the raylet's logs say which); the other tasks were cancelled"
        ) from exc
    except BaseException:
        _cancel(ray, pending)
        raise
    return results


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Cancel the tasks: a queued one never starts, a running one's worker is killed (a gentle
    cancel only interrupts Python code, not a fit running in C for minutes)."""
    for ref in refs:
        ray.cancel(ref, force=True)


def map_shards(fn: Callable[[Item, Any], Result], items: Sequence[Item], shared: Any = None
               ) -> list[Result]:  # fmt: skip
    """``[fn(item, shared) for item in items]`` like ``fan_out``, but on Ray one task per
    contiguous shard of items (two per CPU of the cluster): for many small items, such as the
    feature rows of each series, where a task per item would cost more than its work."""
    if not parallel() or len(items) < 2:
        return [fn(item, shared) for item in items]
    ray = _connected()
    n_shards = min(len(items), 2 * max(1, int(ray.cluster_resources().get("CPU", 1))))
    bounds = [len(items) * k // n_shards for k in range(n_shards + 1)]
    shards = [list(items[a:b]) for a, b in pairwise(bounds)]
    done = fan_out(_shard, shards, (fn, shared))
    return [result for shard in done for result in shard]


def _shard(items: list[Any], shared: tuple[Callable[[Any, Any], Any], Any]) -> list[Any]:
    fn, inner = shared
    return [fn(item, inner) for item in items]


_in_task = False
"""True inside a fan-out's task (nested fan-outs run in its process)."""


def _call(fn: Callable[[Any, Any], Any], item: bytes, shared: bytes) -> bytes:
    """Inputs and result travel pickled in band: Ray's zero-copy arrays are read-only, which
    statsmodels' state-space code refuses ("buffer source array is read-only")."""
    global _in_task
    _in_task = True
    try:
        return pickle.dumps(fn(pickle.loads(item), pickle.loads(shared)))
    finally:
        _in_task = False


def _connected() -> Any:
    import ray

    if not ray.is_initialized():
        address = os.environ.get(ADDRESS_ENV) or None
        options: dict[str, Any] = {} if address else {
            "num_cpus": os.cpu_count() or 1, "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, **options)  # fmt: skip
        where = address or "a local Ray in this process"
        print(f"[tidemill] engine: Ray {ray.__version__} at {where}, "
              f"{int(ray.cluster_resources().get('CPU', 0))} CPUs", flush=True)
    return ray
