"""Re-export Prometheus text files (``*.prom``) written by other jobs, e.g. the drift gauges
that ``drift_monitor`` writes to ``<home>/metrics``, on the control API's ``/metrics``.

Generic on purpose: serving reads the files, it does not import the jobs that write them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


class TextfileCollector(Collector):
    """Re-exports every ``*.prom`` file of a directory (families merged across files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for path in sorted(self.directory.glob("*.prom")):
            try:
                text = path.read_text()
            except FileNotFoundError:  # replaced between glob and read
                continue
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                merged.samples.extend(family.samples)
        yield from families.values()
