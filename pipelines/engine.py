"""Where per-series work runs: in this process (``local``, the default) or on Ray.

An experiment's ``engine:`` (``kind: ray``, ``address``) or ``TIDEMILL_ENGINE=ray`` fans the
fits of local models out as Ray tasks, one per series. ``TIDEMILL_RAY_ADDRESS`` (or
``engine.address``) names a running cluster: ``ray://<head>:10001`` for a KubeRay head
service, ``auto`` for one started on this machine (``ray start --head``); without an address
the first fan-out starts a local Ray inside this process. What every task shares goes to Ray's
object store once (``ray.put``), not once per task. A task whose worker process dies is run
again (``max_retries``); a task that raises fails the fan-out with its own error.

Serving never fans out (the serving environment has no Ray): predictions stay in process.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
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


def fan_out(fn: Callable[[Item, Any], Result], items: Sequence[Item], shared: Any = None
            ) -> list[Result]:  # fmt: skip
    """``[fn(item, shared) for item in items]``, on Ray when the engine is ``ray``."""
    if kind() == "local" or len(items) < 2:
        return [fn(item, shared) for item in items]
    ray = _connected()
    shared_ref = ray.put(pickle.dumps(shared))
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_call)
    done = ray.get([task.remote(fn, pickle.dumps(item), shared_ref) for item in items])
    return [pickle.loads(result) for result in done]


def _call(fn: Callable[[Any, Any], Any], item: bytes, shared: bytes) -> bytes:
    """Inputs and result travel pickled in band: Ray's zero-copy arrays are read-only, which
    statsmodels' state-space code refuses ("buffer source array is read-only")."""
    return pickle.dumps(fn(pickle.loads(item), pickle.loads(shared)))


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
