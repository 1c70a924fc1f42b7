"""Reads under writes: 32 connections read random pages of a hot set of posts, first alone,
then while one client writes posts at a steady rate. Post pages are cached per post, so a
write should cost the readers little; the ratio of the two read rates says how little.

The writer is a thread here, pacing `POST /api/posts` by the monotonic clock without waiting
for the answers (PacedWriter). Afterwards every post it was told was created must be
readable through the API."""

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import httpx

from bench import load
from bench.load import Load, LoadResult
from bench.paths import PathSet
from bench.routes import WRITE_BODY

WRITES_PER_S = 20.0
READERS = 32
HTTP_TIMEOUT_S = 30
# Writes that may wait for their answer at once: 20/s at 200 ms each is 4.
IN_FLIGHT = 16
# Each worker caches pages of its own, and random reads take thousands of requests to have
# asked every worker for every page of the hot set: until then the rate climbs, and a
# read-only run measured too early would make the mixed run after it look faster. 8 reads
# per page are about 4 per page for each of 2 workers, which leaves some 2 % of the pages
# (e^-4) unasked on each. Rate alone is no guide: on a shared machine it wobbles by more
# than the last of the climb.
WARM_READS_PER_PAGE = 8
MIN_WARM_ROUND_S = 1.0
MAX_WARM_S = 60.0
TRANSPORT_ERROR = "transport error"


@dataclass(frozen=True)
class Writes:
    """What the writer sent and what became of it."""

    sent: int
    acknowledged: int
    seconds: float
    # Answers other than 201 by status (or TRANSPORT_ERROR), counted.
    refused: dict[str, int] = field(default_factory=dict)
    # Of the acknowledged posts, how many GET /api/posts/{id} then found.
    readable: int = 0

    @property
    def errors(self) -> int:
        return sum(self.refused.values())

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class MixedLoad:
    hot_paths: int
    alone: LoadResult
    mixed: LoadResult
    writes: Writes
    write_rate: float = WRITES_PER_S
    # Warm-up rounds run before the read-only figure (see warm_up).
    warm_rounds: int = 0

    @property
    def ratio(self) -> float:
        return self.mixed.rps / self.alone.rps if self.alone.rps else 0.0


class PacedWriter(threading.Thread):
    """Sends `POST /api/posts` at `rate` per second until stopped.

    Open loop: each write is sent when it is due, whether or not the earlier ones have been
    answered (a small pool carries the ones in flight), so a slow answer does not lower the
    rate the readers are put under. Never early, never a burst beyond what fell due."""

    def __init__(self, base_url: str, token: str, rate: float) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.base_url, self.token, self.rate = base_url, token, rate
        self.halt = threading.Event()
        self.sent = 0
        self.created: list[int] = []
        self.refused: Counter[str] = Counter()
        self.seconds = 0.0
        self._lock = threading.Lock()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with (
            httpx.Client(base_url=self.base_url, headers=headers, timeout=HTTP_TIMEOUT_S) as client,
            ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="bench-write") as pool,
        ):
            started = time.monotonic()
            # The n-th write is due n / rate seconds after the start.
            while not self.halt.wait(max(0.0, started + self.sent / self.rate - time.monotonic())):
                self.sent += 1
                pool.submit(self._write, client)
            self.seconds = time.monotonic() - started
            # Leaving the pool waits for the writes in flight: each is counted either way.

    def _write(self, client: httpx.Client) -> None:
        try:
            response = client.post("/api/posts", json=WRITE_BODY)
        except httpx.HTTPError:
            outcome: int | str = TRANSPORT_ERROR
        else:
            ok = response.status_code == 201
            outcome = int(response.json()["id"]) if ok else str(response.status_code)
        with self._lock:
            if isinstance(outcome, int):
                self.created.append(outcome)
            else:
                self.refused[outcome] += 1

    def stop(self) -> Writes:
        self.halt.set()
        self.join(timeout=HTTP_TIMEOUT_S * 2)
        return Writes(self.sent, len(self.created), self.seconds, dict(self.refused))


def readable(base_url: str, post_ids: list[int]) -> int:
    """How many of the posts GET /api/posts/{id} answers with a 200."""
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S) as client:
        return sum(client.get(f"/api/posts/{post_id}").status_code == 200 for post_id in post_ids)


def warm_up(read: Callable[[float], LoadResult], seconds: float, requests: int) -> int:
    """Read in rounds of `seconds` until `requests` have been made, or MAX_WARM_S have
    passed; how many rounds ran."""
    made, rounds = 0, 0
    while made < requests and rounds * seconds < MAX_WARM_S:
        made += read(seconds).requests
        rounds += 1
    return rounds


def measure(base_url: str, hot: PathSet, token: str, seconds: float, warmup: float) -> MixedLoad:
    """Warm the hot set (see WARM_READS_PER_PAGE), read it alone, then read it again with
    the writer running."""

    def read(duration: float) -> LoadResult:
        return load.run(
            base_url + hot.sample,
            Load(READERS, duration),
            load.PATHS_SCRIPT,
            counts_non_2xx=True,
            script_args=[str(hot.file)],
        )

    warm_rounds = warm_up(read, max(warmup, MIN_WARM_ROUND_S), WARM_READS_PER_PAGE * hot.count)
    alone = read(seconds)
    writer = PacedWriter(base_url, token, WRITES_PER_S)
    writer.start()
    try:
        mixed = read(seconds)
    finally:
        writes = writer.stop()
    checked = replace(writes, readable=readable(base_url, writer.created))
    return MixedLoad(hot.count, alone, mixed, checked, warm_rounds=warm_rounds)
