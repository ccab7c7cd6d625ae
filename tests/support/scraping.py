"""Read a process's Prometheus /metrics page into numbers a test can compare."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: sample values by sample name and labels."""

    def __init__(self, text: str) -> None:
        self._samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
        return sum(
            value
            for sample, have, value in self._samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )


async def scrape(port: int) -> Scrape:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
        response.raise_for_status()
        return Scrape(response.text)
