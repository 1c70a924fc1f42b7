"""The growth figures: c=1 latency of the uncached growth routes on every dataset, measured
in alternating rounds (1k, 100k, 1m, 1k, 100k, 1m, ...), so that a shared CPU that speeds up
or slows down during the run weighs on every size alike. The per-size tables are measured
minutes apart and cannot say that much."""

import statistics
import sys
from dataclasses import dataclass, field

from bench import load, servers
from bench.datasets import Dataset
from bench.load import Load
from bench.routes import CEILING_PATH, routes

ROUNDS = 5


@dataclass
class Growth:
    """p50 (ms, c=1) of each route on each dataset size, one value per round."""

    rounds: int
    p50_ms: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, size: str, label: str, value: float) -> None:
        self.p50_ms.setdefault(size, {}).setdefault(label, []).append(value)

    def median(self, size: str, label: str) -> float | None:
        values = self.p50_ms.get(size, {}).get(label)
        return statistics.median(values) if values else None


def measure(measured: list[Dataset], labels: list[str], seconds: float, warmup: float) -> Growth:
    """Each size in turn, ROUNDS times over; a fresh server per size and round."""
    growth = Growth(ROUNDS)
    for number in range(1, ROUNDS + 1):
        for dataset in measured:
            print(f"bench: growth round {number}: {dataset.size.label}", file=sys.stderr)
            chosen = [route for route in routes(dataset) if route.label in labels]
            with servers.serving(
                servers.INKWELL_APP, dataset.url, servers.LOG_DIR, CEILING_PATH
            ) as server:
                for route in chosen:
                    url = server.base_url + route.path
                    if warmup > 0:
                        load.run(url, Load(1, warmup), load.UNCACHED_SCRIPT)
                    result = load.run(url, Load(1, seconds), load.UNCACHED_SCRIPT)
                    growth.add(dataset.size.label, route.label, result.p50_ms)
    return growth
