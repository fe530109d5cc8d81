"""Re-export Prometheus text files (``*.prom``) written by other jobs, e.g. the drift gauges
that ``drift_monitor`` writes to ``<store>/metrics`` in the artifact store, on the control
API's ``/metrics``.

Generic on purpose: serving reads the files, it does not import the jobs that write them. The
folder is a store URL (a local directory or ``s3://...``), re-read on every scrape; while the
store cannot be read, the last files read are served again and
``tidemill_job_metrics_read_failures_total`` counts the failed reads (the scrape never fails).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pipelines import artifact_store

log = logging.getLogger(__name__)


class TextfileCollector(Collector):
    """Re-exports every ``*.prom`` object of a store folder (families merged across files)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = str(folder)
        self._texts: list[str] = []
        self.failures = 0

    def _read(self) -> list[str]:
        texts = []
        for name in artifact_store.list_files(self.folder):
            if "/" in name or not name.endswith(".prom"):
                continue
            try:
                texts.append(artifact_store.read_text(artifact_store.join(self.folder, name)))
            except FileNotFoundError:  # replaced between listing and reading
                continue
        return texts

    def collect(self) -> Iterator[Metric]:
        try:
            self._texts = self._read()
        except OSError as exc:  # ArtifactStoreError included
            self.failures += 1
            log.warning("job metrics in %s unreadable, serving the last read: %s",
                        self.folder, exc)
        families: dict[str, Metric] = {}
        for text in self._texts:
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                merged.samples.extend(family.samples)
        yield from families.values()
        failures = CounterMetricFamily(
            "tidemill_job_metrics_read_failures",
            "Scrapes that could not read the job metrics in the artifact store")
        failures.add_metric([], self.failures)
        yield failures
