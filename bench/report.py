"""The results as Markdown: one table per dataset size, then the performance targets, each
marked PASS or MISS (or N/A when the run did not include what it needs)."""

from dataclasses import dataclass, field

from bench.datasets import Dataset
from bench.growth import Growth
from bench.load import LoadResult
from bench.machine import Machine
from bench.mixed import READERS, WARM_READS_PER_PAGE, MixedLoad
from bench.routes import (
    API_POST,
    API_POSTS,
    BEARER,
    HOME,
    LOGGED_IN,
    POST,
    RANDOM_POST,
    SEARCH_WORD,
    UNCACHED,
    WRITE_ROUTE,
)

# The performance targets: SQLite, 100k posts, c=32, 2 workers.
REFERENCE_SIZE = "100k"
SMALL, LARGE = "1k", "1m"
HOME_VS_FLOOR = 1.0
API_VS_FLOOR = 0.7
TAIL_RATIO = 4.0
HOME_GROWTH = 1.5
PAGE_50_GROWTH = 2.0
SEARCH_P50_MS = 50.0
WRITES_PER_S = 800.0
WRITE_P99_MS = 150.0
RSS_MB = 150.0
PAGE_50 = "/?page=50"
SEARCH = f"/search?q={SEARCH_WORD}"
RATIO_ROUTES = {HOME: HOME_VS_FLOOR, API_POSTS: API_VS_FLOOR, POST: API_VS_FLOOR}
# Read with the page cache bypassed: a cached page costs the same at any size, so only the
# uncached figures say how the queries scale.
HOME_UNCACHED, PAGE_50_UNCACHED = HOME + UNCACHED, PAGE_50 + UNCACHED
SEARCH_UNCACHED = SEARCH + UNCACHED
GROWTH_LABELS = [HOME_UNCACHED, PAGE_50_UNCACHED, SEARCH_UNCACHED]
# Pages the page cache cannot answer, or answers only in part: a miss, a logged-in reader
# (whose pages are personal), an API client with a token, a crawler's random post.
MISS_VS_FLOOR = 0.5
MISS_ROUTES = {
    label: MISS_VS_FLOOR
    for label in (
        HOME_UNCACHED,
        HOME + LOGGED_IN,
        POST + LOGGED_IN,
        API_POSTS + BEARER,
        API_POST + BEARER,
        RANDOM_POST,
    )
}
# Inkwell's route, and the route of bench/tutorial_app.py doing the same work, which
# Inkwell must outrun by this factor.
TUTORIAL = "tutorial: "
TUTORIAL_FACTOR = 2.0
TUTORIAL_PAIRS = [
    (POST + UNCACHED, TUTORIAL + POST),
    (POST + LOGGED_IN, TUTORIAL + POST),
    (API_POST + BEARER, TUTORIAL + API_POST),
]
# Readers under one writer keep this share of their read-only rate, the writer keeping at
# least PACE_KEPT of its pace.
MIXED_RATIO = 0.8
PACE_KEPT = 0.9


@dataclass(frozen=True)
class Measured:
    """One route at one size: c=32 for throughput, c=1 for latency."""

    label: str
    busy: LoadResult
    single: LoadResult
    write: bool = False
    queries: int | None = None
    transactions: int | None = None


@dataclass
class SizeResults:
    dataset: Dataset
    floor: Measured
    ceiling: Measured
    routes: list[Measured] = field(default_factory=list)
    inkwell_rss_mb: list[float] = field(default_factory=list)
    inkwell_read_rss_mb: list[float] = field(default_factory=list)
    floor_rss_mb: list[float] = field(default_factory=list)
    floor_html_matches: bool = False
    # The same post read from bench/tutorial_app.py, a typical FastAPI tutorial blog.
    references: list[Measured] = field(default_factory=list)
    # Reads of a hot set while one client writes (bench/mixed.py).
    mixed: MixedLoad | None = None
    # How many post paths the random post page picks from.
    crawled_paths: int = 0

    @property
    def label(self) -> str:
        return self.dataset.size.label

    def route(self, label: str) -> Measured:
        return next(route for route in self.routes if route.label == label)

    def find(self, label: str) -> Measured | None:
        """An Inkwell route or a reference (by its full label), if this run measured it."""
        return next((m for m in [*self.routes, *self.references] if m.label == label), None)

    def vs_floor(self, measured: Measured) -> float:
        return measured.busy.rps / self.floor.busy.rps if self.floor.busy.rps else 0.0

    @property
    def reads(self) -> list[Measured]:
        return [route for route in self.routes if not route.write]


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    passed: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return "N/A" if self.passed is None else "PASS" if self.passed else "MISS"


# ---------------------------------------------------------------- tables

HEADER = (
    "| route | requests | req/s | p50 ms | p99 ms | p99/p50 | p50 ms c=1 | x floor "
    "| SQL/req | errors |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def _sql(measured: Measured) -> str:
    if measured.queries is None:
        return "—"
    return f"{measured.queries} (+{measured.transactions} tx)"


def _row(results: SizeResults, measured: Measured) -> str:
    busy, single = measured.busy, measured.single
    ratio = "—" if measured.write else f"{results.vs_floor(measured):.2f}"
    cells = [
        measured.label,
        f"{busy.requests:,}",
        f"{busy.rps:,.0f}",
        f"{busy.p50_ms:.2f}",
        f"{busy.p99_ms:.2f}",
        f"{busy.tail_ratio:.1f}",
        f"{single.p50_ms:.2f}",
        ratio,
        _sql(measured),
        f"{busy.failures + single.failures}",
    ]
    return "| " + " | ".join(cells) + " |"


def _mb(values: list[float]) -> str:
    return " / ".join(f"{value:.1f}" for value in values) or "?"


def size_section(results: SizeResults) -> str:
    size = results.dataset.size
    measured = [results.floor, *results.references, results.ceiling, *results.routes]
    rows = [_row(results, m) for m in measured]
    match = "identical" if results.floor_html_matches else "**DIFFERENT** (check bench/floor.py)"
    return "\n".join(
        [
            f"### {size.label}: {size.posts:,} posts, {size.users:,} users",
            "",
            HEADER,
            *rows,
            "",
            f"Peak RSS per worker (VmHWM, MB): Inkwell {_mb(results.inkwell_rss_mb)} at the "
            f"end ({_mb(results.inkwell_read_rss_mb)} before the write phase); "
            f"floor {_mb(results.floor_rss_mb)}. "
            f"Floor's HTML vs Inkwell's `/`: {match}. "
            f"Ids used: post {results.dataset.post_id}, user {results.dataset.user_id}; "
            f"`{RANDOM_POST}` picks from {results.crawled_paths:,} live posts.",
        ]
    )


def _comparison_rows(results: SizeResults) -> list[str]:
    rows = []
    for label, reference_label in TUTORIAL_PAIRS:
        ours, theirs = results.find(label), results.find(reference_label)
        if ours is None or theirs is None:
            continue
        ratio = ours.busy.rps / theirs.busy.rps if theirs.busy.rps else 0.0
        cells = [
            f"`{label}`",
            f"{ours.busy.rps:,.0f}",
            f"{ours.busy.p99_ms:.2f}",
            f"`{reference_label.removeprefix(TUTORIAL)}`",
            f"{theirs.busy.rps:,.0f}",
            f"{theirs.busy.p99_ms:.2f}",
            f"{ratio:.2f}x",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _mixed_lines(found: MixedLoad) -> list[str]:
    writes = found.writes
    refused = ", ".join(f"{status}: {n}" for status, n in sorted(writes.refused.items()))
    rows = []
    for name, result in (("alone", found.alone), ("with the writer", found.mixed)):
        cells = [
            name,
            f"{result.rps:,.0f}",
            f"{result.p50_ms:.2f}",
            f"{result.p99_ms:.2f}",
            f"{result.failures}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return [
        f"Mixed load: {READERS} connections read random pages of {found.hot_paths:,} hot "
        f"posts, alone and then while one client sends `{WRITE_ROUTE}` at "
        f"{found.write_rate:g}/s (bench/mixed.py), after {found.warm_rounds} warm-up rounds "
        f"(until {WARM_READS_PER_PAGE} reads per hot page were made, so that the read-only "
        "figure is not a cold one).",
        "",
        "| reads | req/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Reads with the writer ÷ alone: {found.ratio:.2f}x. Writes: {writes.sent} sent in "
        f"{writes.seconds:.1f} s ({writes.rate:.1f}/s), {writes.acknowledged} acknowledged "
        f"(201), {writes.errors} errors{f' ({refused})' if refused else ''}; "
        f"{writes.readable} of the acknowledged posts readable afterwards "
        "(`GET /api/posts/{id}` 200).",
    ]


def comparison_section(results: SizeResults) -> str:
    """Inkwell beside the tutorial app, and reads under writes, from the size's run."""
    lines = [
        f"### {results.label}: compared in the same run",
        "",
        "| Inkwell route | req/s | p99 ms | tutorial app route | req/s | p99 ms "
        "| Inkwell ÷ tutorial |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
        *_comparison_rows(results),
    ]
    if results.mixed is not None:
        lines += ["", *_mixed_lines(results.mixed)]
    return "\n".join(lines)


# ---------------------------------------------------------------- targets


def _by_size(all_results: list[SizeResults]) -> dict[str, SizeResults]:
    return {results.label: results for results in all_results}


def _reference(all_results: list[SizeResults]) -> tuple[SizeResults, str]:
    """The 100k results, or the largest size measured (with a note saying so)."""
    sizes = _by_size(all_results)
    if REFERENCE_SIZE in sizes:
        return sizes[REFERENCE_SIZE], ""
    fallback = all_results[-1]
    return fallback, f" (at {fallback.label}: {REFERENCE_SIZE} not measured)"


def _floor_checks(results: SizeResults, note: str, minimums: dict[str, float]) -> list[Check]:
    """Each route's c=32 req/s as a share of the floor's, measured in the same run."""
    checks = []
    for label, minimum in minimums.items():
        target = f"`{label}` ≥ {minimum:.1f}x floor req/s at {REFERENCE_SIZE}, c=32"
        measured = results.find(label)
        if measured is None:
            checks.append(Check(target, "not measured", None))
            continue
        ratio = results.vs_floor(measured)
        checks.append(Check(target, f"{ratio:.2f}x{note}", ratio >= minimum))
    return checks


def _tutorial_checks(results: SizeResults, note: str) -> list[Check]:
    """Inkwell's route against the tutorial app's doing the same work, side by side."""
    checks = []
    for label, reference_label in TUTORIAL_PAIRS:
        target = (
            f"`{label}` ≥ {TUTORIAL_FACTOR:.0f}x {reference_label.removeprefix(TUTORIAL)} "
            f"of the tutorial app, req/s at {REFERENCE_SIZE}, c=32"
        )
        ours, theirs = results.find(label), results.find(reference_label)
        if ours is None or theirs is None or not theirs.busy.rps:
            checks.append(Check(target, "not measured", None))
            continue
        ratio = ours.busy.rps / theirs.busy.rps
        figures = f"{ours.busy.rps:,.0f} / {theirs.busy.rps:,.0f} req/s = {ratio:.2f}x{note}"
        checks.append(Check(target, figures, ratio >= TUTORIAL_FACTOR))
    return checks


def _mixed_checks(results: SizeResults, note: str) -> list[Check]:
    found = results.mixed
    share = f"Reads of a hot set keep ≥ {MIXED_RATIO:.1f}x their rate under one writer"
    kept = "Every write under the mixed load acknowledged, and readable afterwards"
    if found is None:
        return [Check(share, "not measured", None), Check(kept, "not measured", None)]
    writes = found.writes
    # A writer that fell behind its pace did not put the readers under the load named.
    paced = writes.rate >= PACE_KEPT * found.write_rate
    return [
        Check(
            share,
            f"{found.mixed.rps:,.0f} / {found.alone.rps:,.0f} req/s = {found.ratio:.2f}x "
            f"at {writes.rate:.1f} writes/s"
            + ("" if paced else f" (below {PACE_KEPT:.0%} of {found.write_rate:g}/s)")
            + note,
            found.ratio >= MIXED_RATIO and paced,
        ),
        Check(
            kept,
            f"sent {writes.sent}, acknowledged {writes.acknowledged}, readable "
            f"{writes.readable}, errors {writes.errors}{note}",
            writes.sent > 0 and writes.errors == 0 and writes.readable == writes.acknowledged,
        ),
    ]


def _tail_checks(results: SizeResults, note: str) -> list[Check]:
    return [
        Check(
            f"`{route.label}` p99 ≤ {TAIL_RATIO:.0f}x p50 at c=32",
            f"{route.busy.p99_ms:.1f} / {route.busy.p50_ms:.1f} ms = "
            f"{route.busy.tail_ratio:.1f}x{note}",
            route.busy.tail_ratio <= TAIL_RATIO,
        )
        for route in results.reads
    ]


def _c1_p50(results: SizeResults, label: str, growth: Growth | None) -> float:
    """p50 at c=1: the median of the alternating rounds where they were run, else the
    size's own table."""
    median = growth.median(results.label, label) if growth else None
    return median if median is not None else results.route(label).single.p50_ms


def _growth_check(
    all_results: list[SizeResults], label: str, limit: float, growth: Growth | None
) -> Check:
    sizes = _by_size(all_results)
    target = f"`{label}` p50 (c=1) at {LARGE} ≤ {limit:.1f}x at {SMALL}"
    if SMALL not in sizes:
        return Check(target, f"{SMALL} not measured", None)
    largest = all_results[-1]
    if largest.label == SMALL:
        return Check(target, f"only {SMALL} measured", None)
    small = _c1_p50(sizes[SMALL], label, growth)
    large = _c1_p50(largest, label, growth)
    figures = f"{small:.2f} → {large:.2f} ms = {large / small:.2f}x"
    if largest.label != LARGE:
        return Check(target, f"{figures} at {largest.label} ({LARGE} not measured)", None)
    return Check(target, figures, large / small <= limit)


def _search_check(all_results: list[SizeResults], growth: Growth | None) -> Check:
    largest = all_results[-1]
    p50 = _c1_p50(largest, SEARCH_UNCACHED, growth)
    target = f"`{SEARCH_UNCACHED}` p50 (c=1) ≤ {SEARCH_P50_MS:.0f} ms at {LARGE}"
    if largest.label != LARGE:
        return Check(target, f"{p50:.2f} ms at {largest.label} ({LARGE} not measured)", None)
    return Check(target, f"{p50:.2f} ms", p50 <= SEARCH_P50_MS)


def _write_check(results: SizeResults, note: str) -> Check:
    target = (
        f"`{WRITE_ROUTE}` ≥ {WRITES_PER_S:.0f}/s at c=32 with p99 ≤ {WRITE_P99_MS:.0f} ms "
        "and zero errors"
    )
    writes = results.find(WRITE_ROUTE)
    if writes is None:
        return Check(target, "not measured", None)
    failures = writes.busy.failures + writes.single.failures
    return Check(
        target,
        f"{writes.busy.rps:,.0f}/s over {writes.busy.seconds:.0f} s, p99 "
        f"{writes.busy.p99_ms:,.1f} ms, {writes.busy.requests:,} requests, {failures} "
        f"errors{note}",
        writes.busy.rps >= WRITES_PER_S and writes.busy.p99_ms <= WRITE_P99_MS and failures == 0,
    )


def _rss_check(all_results: list[SizeResults]) -> Check:
    largest = all_results[-1]
    peak = max(largest.inkwell_rss_mb, default=0.0)
    target = f"Peak RSS per worker ≤ {RSS_MB:.0f} MB at {LARGE}"
    if largest.label != LARGE:
        return Check(target, f"{peak:.1f} MB at {largest.label} ({LARGE} not measured)", None)
    return Check(target, f"{peak:.1f} MB", peak <= RSS_MB)


def checks(all_results: list[SizeResults], growth: Growth | None = None) -> list[Check]:
    reference, note = _reference(all_results)
    return [
        *_floor_checks(reference, note, RATIO_ROUTES),
        *_floor_checks(reference, note, MISS_ROUTES),
        *_tutorial_checks(reference, note),
        *_tail_checks(reference, note),
        _growth_check(all_results, HOME_UNCACHED, HOME_GROWTH, growth),
        _growth_check(all_results, PAGE_50_UNCACHED, PAGE_50_GROWTH, growth),
        _search_check(all_results, growth),
        _write_check(reference, note),
        *_mixed_checks(reference, note),
        _rss_check(all_results),
    ]


def checks_section(found: list[Check]) -> str:
    lines = ["| target | measured | verdict |", "| --- | --- | --- |"]
    lines += [f"| {check.target} | {check.measured} | {check.verdict} |" for check in found]
    return "\n".join(lines)


# ---------------------------------------------------------------- the whole report


def growth_section(all_results: list[SizeResults], growth: Growth) -> str:
    labels = [results.label for results in all_results]
    lines = [
        f"p50 at c=1 in ms, page cache bypassed; the median of {growth.rounds} rounds that "
        "took each size in turn (each round's figure in brackets).",
        "",
        "| route | " + " | ".join(labels) + f" | {labels[-1]} ÷ {labels[0]} |",
        "| --- |" + " ---: |" * (len(labels) + 1),
    ]
    for label in GROWTH_LABELS:
        cells = []
        for size in labels:
            rounds = ", ".join(f"{value:.2f}" for value in growth.p50_ms[size][label])
            cells.append(f"{growth.median(size, label):.2f} ({rounds})")
        first, last = growth.median(labels[0], label), growth.median(labels[-1], label)
        ratio = f"{last / first:.2f}x" if first and last else "—"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def render(
    machine: Machine, all_results: list[SizeResults], title: str, growth: Growth | None = None
) -> str:
    sections = [
        f"# {title}",
        "## Machine",
        machine.markdown(),
        "## Results",
        METHOD_NOTE,
        *[size_section(results) for results in all_results],
        "## Compared",
        *[comparison_section(results) for results in all_results],
    ]
    if growth is not None:
        sections += ["## Growth", growth_section(all_results, growth)]
    sections += ["## Targets", checks_section(checks(all_results, growth))]
    return "\n\n".join(sections) + "\n"


METHOD_NOTE = (
    "Each route: a warm-up, then wrk at c=32 (2 threads) for throughput and p50/p99, then "
    "c=1 for latency alone; all servers are uvicorn with 2 workers, uvloop, httptools, no "
    "access log, DEBUG off. *floor* is `bench/floor.py` (bare ASGI + sqlite3 + a compiled "
    "Jinja2 template rendering the same home page); *ceiling* is an `async def` route "
    "returning a constant inside Inkwell (`bench/ceiling_app.py`), and every Inkwell route "
    "is measured in that same app; *tutorial* rows are `bench/tutorial_app.py`, the blog as "
    "a typical FastAPI tutorial writes it (sync ORM session dependency, `TemplateResponse`, "
    "a Pydantic response model), on the same dataset. x floor = req/s ÷ the floor's req/s "
    "at c=32. SQL/req is "
    "counted in-process after one warm-up request (queries, plus transaction statements). "
    "errors = socket errors and refused responses in both runs (for writes: any non-2xx). "
    "Routes marked *uncached* add a parameter the app ignores, with a new value on every "
    "request, so the page cache never answers and each request does the route's full work "
    "(its SQL/req is the miss path's); the growth and search targets are read from them, "
    "as measured in the Growth section when the run has more than one size. Routes marked "
    "*(logged in)* send the session cookie of a benchmark user who logged in through the "
    "site's form; *(bearer)* send that user's API token. "
    f"`{RANDOM_POST}` asks for a random post of a large seeded sample of the dataset on each "
    "request (a crawler), and only a 200 counts as success."
)
