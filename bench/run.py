"""The benchmark, end to end: `python -m bench 1k 100k 1m` (what `make bench` runs).

For each dataset size: build or reuse the dataset, count SQL statements per route in-process,
then serve the floor (bench/floor.py) and Inkwell (bench/ceiling_app.py) in turn under
uvicorn and drive every route with wrk. Prints a Markdown report and writes it to
bench/results/<date>.md.

With --postgres (or BENCH_POSTGRES=1) the same routes run on PostgreSQL: a throwaway server
(bench/postgres.py), each dataset seeded there, the floor reading it through psycopg; the
report goes to bench/results/<date>-postgres.md.

Environment: BENCH_SECONDS (default 15) per measured run, BENCH_WARMUP (default 5) before
each route; SIZES when no sizes are given on the command line.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench import datasets, growth, load, machine, mixed, paths, report, servers
from bench.datasets import Dataset
from bench.growth import Growth
from bench.load import Load, LoadResult
from bench.mixed import MixedLoad
from bench.paths import PathSet
from bench.report import Measured, SizeResults
from bench.routes import CEILING_PATH, Credentials, Route, routes, sign_in, wrk_headers

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = servers.LOG_DIR
BUSY_CONNECTIONS = 32
SQLCOUNT_TIMEOUT_S = 900
HTTP_TIMEOUT_S = 30
FLOOR_APP = "bench.floor:app"
TUTORIAL_APP = "bench.tutorial_app:app"
INKWELL_APP = servers.INKWELL_APP


@dataclass(frozen=True)
class Timing:
    seconds: float
    warmup: float

    @classmethod
    def from_env(cls) -> "Timing":
        return cls(
            seconds=float(os.environ.get("BENCH_SECONDS", "15")),
            warmup=float(os.environ.get("BENCH_WARMUP", "5")),
        )


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measuring one route


def measure(
    label: str, url: str, timing: Timing, *, script: Path = load.READ_SCRIPT, **options: Any
) -> tuple[LoadResult, LoadResult]:
    """Warm up, then c=32 for throughput and c=1 for latency (`options` go to load.run)."""
    if timing.warmup > 0:
        load.run(url, Load(BUSY_CONNECTIONS, timing.warmup), script, **options)
    busy = load.run(url, Load(BUSY_CONNECTIONS, timing.seconds), script, **options)
    single = load.run(url, Load(1, timing.seconds), script, **options)
    log(
        f"  {label:<34} {busy.rps:>9,.0f} req/s  p50 {busy.p50_ms:7.2f} ms  "
        f"p99 {busy.p99_ms:7.2f} ms  c=1 p50 {single.p50_ms:6.2f} ms  "
        f"errors {busy.failures + single.failures}"
    )
    return busy, single


def sql_counts(dataset: Dataset, measured: list[Route]) -> dict[str, dict[str, int]]:
    """Statements per request for each route, counted in a process of its own."""
    specs = json.dumps([asdict(route) for route in measured])
    result = subprocess.run(
        [sys.executable, "-m", "bench.sqlcount", specs],
        cwd=servers.ROOT,
        env=servers.app_environment(dataset.url),
        capture_output=True,
        text=True,
        timeout=SQLCOUNT_TIMEOUT_S,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith("SQLCOUNT "):
            counts: dict[str, dict[str, int]] = json.loads(line.removeprefix("SQLCOUNT "))
            return counts
    raise RuntimeError(f"statement count failed:\n{result.stderr[-3000:]}")


def _page(base_url: str, path: str = "/") -> str:
    response = httpx.get(base_url + path, timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    # Compare documents, not the port each server happened to get.
    return response.text.replace(base_url, "ORIGIN")


def _check_status(base_url: str, route: Route, headers: dict[str, str]) -> None:
    response = httpx.get(base_url + route.path, headers=headers, timeout=HTTP_TIMEOUT_S)
    if response.status_code != 200:
        raise RuntimeError(f"{route.label} answered {response.status_code}, not 200")
    # A session that did not take would measure an anonymous reader under the wrong label.
    if route.auth == "session" and "/logout" not in response.text:
        raise RuntimeError(f"{route.label} was not answered as a logged-in page")


# ---------------------------------------------------------------- the two servers


@dataclass(frozen=True)
class ServerRun:
    """What one server's session produced: its measured routes, its workers' peak RSS and
    its home page (to check that the floor renders the same document)."""

    measured: list[Measured]
    rss_mb: list[float]
    home_html: str
    # Before the write phase (which also registers a user: one argon2 hash) starts.
    rss_after_reads_mb: list[float] = field(default_factory=list)
    mixed: MixedLoad | None = None


def measure_floor(dataset: Dataset, timing: Timing) -> ServerRun:
    log(f"{dataset.size.label}: floor")
    with servers.serving(FLOOR_APP, dataset.url, LOG_DIR, "/") as server:
        html = _page(server.base_url)
        busy, single = measure("floor /", server.base_url + "/", timing)
        rss = server.peak_rss_mb()
    return ServerRun([Measured("floor: / (bench/floor.py)", busy, single)], rss, html)


def measure_tutorial(dataset: Dataset, timing: Timing) -> list[Measured]:
    """The tutorial-style reference app's post page and API read of the same post."""
    log(f"{dataset.size.label}: tutorial reference")
    paths = {
        "/posts/{id}": f"/posts/{dataset.post_id}",
        "/api/posts/{id}": f"/api/posts/{dataset.post_id}",
    }
    with servers.serving(TUTORIAL_APP, dataset.url, LOG_DIR, paths["/api/posts/{id}"]) as server:
        return [
            Measured(
                f"tutorial: {label}", *measure(f"tutorial {label}", server.base_url + path, timing)
            )
            for label, path in paths.items()
        ]


def _script(route: Route) -> tuple[Path, list[str]]:
    """The wrk script for `route` and its arguments."""
    if route.write:
        return load.WRITE_SCRIPT, []
    if route.paths_file:
        return load.PATHS_SCRIPT, [route.paths_file]
    return (load.UNCACHED_SCRIPT if route.uncached else load.READ_SCRIPT), []


def _measure_route(
    server: servers.Server, route: Route, timing: Timing, credentials: Credentials
) -> Measured:
    headers = credentials.headers(route.auth)
    if not route.write:
        _check_status(server.base_url, route, headers)
    script, script_args = _script(route)
    busy, single = measure(
        route.label,
        server.base_url + route.path,
        timing,
        script=script,
        # The write and paths scripts look at every response; report.lua alone leaves
        # redirects uncounted, which is fine for a fixed path checked beforehand.
        counts_non_2xx=script in (load.WRITE_SCRIPT, load.PATHS_SCRIPT),
        headers=wrk_headers(headers),
        script_args=script_args,
    )
    return Measured(route.label, busy, single, write=route.write)


def measure_inkwell(
    dataset: Dataset, measured: list[Route], hot: PathSet, timing: Timing
) -> ServerRun:
    """The ceiling first, then every read, the mixed load, and the writes last (the last two
    add rows). One benchmark user holds the token and the browser session of every run."""
    log(f"{dataset.size.label}: Inkwell")
    with servers.serving(INKWELL_APP, dataset.url, LOG_DIR, CEILING_PATH) as server:
        html = _page(server.base_url)
        with httpx.Client(base_url=server.base_url, timeout=HTTP_TIMEOUT_S) as client:
            credentials = sign_in(client)
        busy, single = measure("ceiling", server.base_url + CEILING_PATH, timing)
        results = [Measured(f"ceiling: {CEILING_PATH}", busy, single)]
        reads = [route for route in measured if not route.write]
        results += [_measure_route(server, route, timing, credentials) for route in reads]
        rss_after_reads = server.peak_rss_mb()
        under_writes = _measure_mixed(server, hot, credentials, timing)
        writes = [route for route in measured if route.write]
        results += [_measure_route(server, route, timing, credentials) for route in writes]
        rss = server.peak_rss_mb()
    return ServerRun(results, rss, html, rss_after_reads, under_writes)


def _measure_mixed(
    server: servers.Server, hot: PathSet, credentials: Credentials, timing: Timing
) -> MixedLoad:
    _check_status(server.base_url, Route("hot set", hot.sample), {})
    found = mixed.measure(server.base_url, hot, credentials.token, timing.seconds, timing.warmup)
    writes = found.writes
    log(
        f"  mixed load (after {found.warm_rounds} warm-up rounds): "
        f"{found.alone.rps:,.0f} req/s alone, {found.mixed.rps:,.0f} with "
        f"{writes.rate:.1f} writes/s ({found.ratio:.2f}x); writes sent {writes.sent}, "
        f"acknowledged {writes.acknowledged}, readable {writes.readable}, errors {writes.errors}"
    )
    return found


def _with_counts(route: Measured, counts: dict[str, dict[str, int]]) -> Measured:
    found = counts.get(route.label)
    if found is None:
        return route
    return replace(route, queries=found["queries"], transactions=found["transactions"])


def measure_size(
    size: datasets.Size, timing: Timing, postgres: datasets.Cluster | None = None
) -> SizeResults:
    dataset = datasets.prepare(size, postgres)
    crawl, hot = paths.prepare(dataset)
    measured = routes(dataset, crawl)
    try:
        log(f"{size.label}: counting SQL statements per request")
        counts = sql_counts(dataset, measured)
        floor = measure_floor(dataset, timing)
        tutorial = measure_tutorial(dataset, timing)
        inkwell = measure_inkwell(dataset, measured, hot, timing)
    finally:
        removed = datasets.remove_bench_writers(dataset.url)
        log(f"{size.label}: removed {removed} benchmark writer(s) and their posts")
    ceiling, *inkwell_routes = inkwell.measured
    return SizeResults(
        dataset,
        floor=floor.measured[0],
        ceiling=ceiling,
        routes=[_with_counts(route, counts) for route in inkwell_routes],
        inkwell_rss_mb=inkwell.rss_mb,
        inkwell_read_rss_mb=inkwell.rss_after_reads_mb,
        floor_rss_mb=floor.rss_mb,
        floor_html_matches=floor.home_html == inkwell.home_html,
        references=tutorial,
        mixed=inkwell.mixed,
        crawled_paths=crawl.count,
    )


# ---------------------------------------------------------------- the command


@dataclass(frozen=True)
class Options:
    sizes: list[datasets.Size]
    datasets_only: bool
    postgres: bool


def parse_args(argv: list[str] | None) -> Options:
    """The sizes to measure (smallest first), whether to stop once the datasets exist, and
    whether to run on PostgreSQL."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sizes",
        nargs="*",
        help=f"dataset sizes among {', '.join(datasets.SIZES)} (default: $SIZES or 1k 100k)",
    )
    parser.add_argument(
        "--datasets-only", action="store_true", help="build (or migrate) the datasets and stop"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        default=os.environ.get("BENCH_POSTGRES", "") not in ("", "0"),
        help="run on a throwaway PostgreSQL server (default: $BENCH_POSTGRES, else SQLite)",
    )
    args = parser.parse_args(argv)
    if args.postgres and args.datasets_only:
        parser.error("PostgreSQL datasets are built on each run's own server; nothing to keep")
    labels = args.sizes or os.environ.get("SIZES", "1k 100k").split()
    unknown = [label for label in labels if label.lower() not in datasets.SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose among {list(datasets.SIZES)}")
    chosen = {label.lower() for label in labels}
    # Always smallest first: the growth figures compare the first size with the last.
    sizes = [size for label, size in datasets.SIZES.items() if label in chosen]
    return Options(sizes, args.datasets_only, args.postgres)


@contextlib.contextmanager
def database_server(postgres: bool) -> Iterator[datasets.Cluster | None]:
    """The PostgreSQL server of a --postgres run, for as long as the run lasts; else none."""
    if not postgres:
        yield None
        return
    from bench import postgres as throwaway  # imports psycopg and the test suite's helper

    with throwaway.server() as cluster:
        yield cluster


def measure_all(options: Options, timing: Timing) -> tuple[list[SizeResults], Growth | None]:
    with database_server(options.postgres) as cluster:
        all_results = [measure_size(size, timing, cluster) for size in options.sizes]
        if len(all_results) < 2:
            return all_results, None
        found_growth = growth.measure(
            [results.dataset for results in all_results],
            report.GROWTH_LABELS,
            seconds=max(2.0, timing.seconds / 5),
            warmup=min(1.0, timing.warmup),
        )
    return all_results, found_growth


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.datasets_only:
        for size in options.sizes:
            log(f"{size.label}: {datasets.prepare(size).url}")
        return 0
    timing = Timing.from_env()
    host = machine.describe(load.wrk_version())
    if host.busy:
        log(
            f"WARNING: 1-min load average is {host.load_at_start[0]:.2f} (> {machine.BUSY_LOAD}); "
            "other work is competing for the CPU and the numbers will be unreliable"
        )
    all_results, found_growth = measure_all(options, timing)
    today = date.today().isoformat()
    database = "PostgreSQL" if options.postgres else "SQLite"
    title = (
        f"Inkwell benchmark, {today}, {database} ({timing.seconds:g} s per run, "
        f"{timing.warmup:g} s warm-up, sizes {' '.join(size.label for size in options.sizes)})"
    )
    text = report.render(host, all_results, title, found_growth)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{today}{'-postgres' if options.postgres else ''}.md"
    path.write_text(text, encoding="utf-8")
    print(text)
    log(f"written to {path.relative_to(servers.ROOT)}")
    return 0
