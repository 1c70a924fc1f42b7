"""The benchmark's verdicts: which figures each target reads, and when it passes."""

from dataclasses import replace
from pathlib import Path

from bench import load, mixed, paths, report
from bench.datasets import SIZES, Dataset
from bench.growth import Growth
from bench.load import LoadResult
from bench.mixed import MixedLoad, Writes
from bench.paths import PathSet
from bench.report import Measured, SizeResults
from bench.routes import Credentials, Route, routes, wrk_headers


def _load(p50_ms: float, rps: float = 1000.0) -> LoadResult:
    return LoadResult(
        requests=int(rps * 15),
        seconds=15.0,
        p50_ms=p50_ms,
        p99_ms=p50_ms * 2,
        socket_errors=0,
        status_errors=0,
        non_2xx=None,
    )


def _size(label: str, c1_p50_ms: float) -> SizeResults:
    """One size whose every route took `c1_p50_ms` at c=1 in the size's own table."""
    dataset = Dataset(SIZES[label], f"sqlite:///{label}.db", post_id=1, user_id=1)
    reads = [
        Measured(route, _load(1.0), _load(c1_p50_ms))
        for route in [*report.RATIO_ROUTES, *report.GROWTH_LABELS]
    ]
    writes = Measured(report.WRITE_ROUTE, _load(40.0, rps=500), _load(2.0), write=True)
    floor = Measured("floor", _load(1.0, rps=900), _load(0.2))
    return SizeResults(
        dataset,
        floor=floor,
        ceiling=floor,
        routes=[*reads, writes],
        inkwell_rss_mb=[120.0, 140.0],
    )


def _verdicts(all_results: list[SizeResults], growth: Growth | None) -> dict[str, bool | None]:
    return {check.target: check.passed for check in report.checks(all_results, growth)}


def _growth_target(label: str) -> str:
    return next(
        target for target in _verdicts(SIZES_RUN, None) if target.startswith(f"`{label}` p50")
    )


SIZES_RUN = [_size("1k", 2.0), _size("100k", 2.5), _size("1m", 4.0)]


def test_growth_is_read_from_the_alternating_rounds_when_they_ran():
    # The per-size tables say 2.0 → 4.0 ms (2x, a miss); the rounds say otherwise.
    home = report.HOME_UNCACHED
    target = _growth_target(home)
    assert _verdicts(SIZES_RUN, None)[target] is False

    growth = Growth(rounds=3)
    for size, values in {"1k": [3.0, 3.2, 9.0], "100k": [3.1] * 3, "1m": [3.3, 3.4, 3.1]}.items():
        for label in report.GROWTH_LABELS:
            for value in values:
                growth.add(size, label, value)
    assert growth.median("1k", home) == 3.2
    assert _verdicts(SIZES_RUN, growth)[target] is True
    section = report.growth_section(SIZES_RUN, growth)
    assert "3.20 (3.00, 3.20, 9.00)" in section
    assert "1.03x" in section  # 3.3 / 3.2


def test_growth_misses_when_the_rounds_show_it():
    growth = Growth(rounds=1)
    for label in report.GROWTH_LABELS:
        growth.add("1k", label, 2.0)
        growth.add("100k", label, 2.0)
        growth.add("1m", label, 3.1)
    verdicts = _verdicts(SIZES_RUN, growth)
    assert verdicts[_growth_target(report.HOME_UNCACHED)] is False  # 1.55x > 1.5x
    assert verdicts[_growth_target(report.PAGE_50_UNCACHED)] is True  # 1.55x ≤ 2x


def test_targets_needing_a_million_posts_are_not_judged_without_them():
    verdicts = _verdicts(SIZES_RUN[:2], None)
    growth_and_memory = [
        target for target in verdicts if "at 1m" in target or target.startswith("Peak RSS")
    ]
    assert len(growth_and_memory) == 4
    assert all(verdicts[target] is None for target in growth_and_memory)


# ---------------------------------------------------------------- the targets of every read


FLOOR_RPS = 1000.0


def _reads_at(rps: dict[str, float], write: LoadResult | None = None) -> SizeResults:
    """The 100k results with a floor of FLOOR_RPS req/s, each route of `rps` at its rate
    (and the older targets' routes at the floor's); a label starting with "tutorial: " is a
    reference app's route."""
    dataset = Dataset(SIZES["100k"], "sqlite:///100k.db", post_id=1, user_id=1)
    floor = Measured("floor", _load(1.0, rps=FLOOR_RPS), _load(0.2))
    older = dict.fromkeys([*report.RATIO_ROUTES, report.SEARCH_UNCACHED], FLOOR_RPS)
    measured = {
        label: Measured(label, _load(1.0, rps=r), _load(1.0))
        for label, r in {**older, **rps}.items()
    }
    routes = [m for label, m in measured.items() if not label.startswith(report.TUTORIAL)]
    if write is not None:
        routes.append(Measured(report.WRITE_ROUTE, write, _load(2.0), write=True))
    return SizeResults(
        dataset,
        floor=floor,
        ceiling=floor,
        routes=routes,
        references=[m for label, m in measured.items() if label.startswith(report.TUTORIAL)],
    )


def _verdict(results: SizeResults, starts: str) -> bool | None:
    found = [check for check in report.checks([results]) if check.target.startswith(starts)]
    assert len(found) == 1, [check.target for check in report.checks([results])]
    return found[0].passed


def test_every_miss_path_route_is_held_to_half_the_floor():
    assert len(report.MISS_ROUTES) == 6
    for label in report.MISS_ROUTES:
        target = f"`{label}` ≥ 0.5x floor"
        others = {other: FLOOR_RPS for other in report.MISS_ROUTES if other != label}
        assert _verdict(_reads_at({**others, label: 500.0}), target) is True
        assert _verdict(_reads_at({**others, label: 499.0}), target) is False
        assert _verdict(_reads_at(others), target) is None  # not measured


def test_the_miss_path_routes_are_the_ones_the_benchmark_measures():
    dataset = Dataset(SIZES["100k"], "sqlite:///100k.db", post_id=7, user_id=3, post_slug="s")
    crawled = PathSet(Path("crawl.txt"), 2, "/posts/9/t")
    measured = {route.label: route for route in routes(dataset, crawled)}
    assert set(report.MISS_ROUTES) <= set(measured)
    assert measured["/posts/{id} (logged in)"].auth == "session"
    assert measured["/posts/{id} (logged in) uncached"].uncached
    assert measured["/api/posts/{id} (bearer)"].auth == "bearer"
    assert measured[report.RANDOM_POST].paths_file == "crawl.txt"
    assert measured[report.RANDOM_POST].path == "/posts/9/t"
    tutorial_pairs = [label for pair in report.TUTORIAL_PAIRS for label in pair]
    assert {label for label in tutorial_pairs if not label.startswith(report.TUTORIAL)} <= set(
        measured
    )


def test_inkwell_must_outrun_the_tutorial_app_twice_over_on_each_pair():
    tutorial = {"tutorial: /posts/{id}": 400.0, "tutorial: /api/posts/{id}": 1000.0}
    # Read against the tutorial's post page: 800 / 400 = 2.0 passes, 799 / 400 misses.
    ours = {"/posts/{id} uncached": 800.0, "/posts/{id} (logged in)": 799.0}
    # Against the tutorial's API read, not its post page: 1999 / 1000 misses.
    ours["/api/posts/{id} (bearer)"] = 1999.0
    results = _reads_at({**tutorial, **ours})
    assert _verdict(results, "`/posts/{id} uncached` ≥ 2x") is True
    assert _verdict(results, "`/posts/{id} (logged in)` ≥ 2x") is False
    assert _verdict(results, "`/api/posts/{id} (bearer)` ≥ 2x") is False
    results = _reads_at({**ours, "tutorial: /posts/{id}": 400.0})
    assert _verdict(results, "`/api/posts/{id} (bearer)` ≥ 2x") is None  # no reference

    section = report.comparison_section(_reads_at({**tutorial, **ours}))
    assert "| `/posts/{id} uncached` | 800 | 2.00 | `/posts/{id}` | 400 | 2.00 | 2.00x |" in section


def _write(rps: float, p99_ms: float, refused: int = 0) -> LoadResult:
    return LoadResult(
        requests=int(rps * 15),
        seconds=15.0,
        p50_ms=10.0,
        p99_ms=p99_ms,
        socket_errors=0,
        status_errors=0,
        non_2xx=refused,
    )


def test_the_write_target_needs_the_rate_the_tail_and_no_errors():
    target = "`POST /api/posts` ≥ 800/s"
    assert _verdict(_reads_at({}, _write(800.0, 150.0)), target) is True
    assert _verdict(_reads_at({}, _write(799.0, 100.0)), target) is False
    assert _verdict(_reads_at({}, _write(2000.0, 151.0)), target) is False
    assert _verdict(_reads_at({}, _write(2000.0, 100.0, refused=1)), target) is False
    assert _verdict(_reads_at({}), target) is None


# ---------------------------------------------------------------- reads under writes


def _mixed(alone: float, under_writes: float, writes: Writes, rate: float = 20.0) -> SizeResults:
    results = _reads_at({})
    results.mixed = MixedLoad(
        1000, _load(1.0, rps=alone), _load(1.0, rps=under_writes), writes, rate
    )
    return results


STEADY = Writes(sent=300, acknowledged=300, seconds=15.0, readable=300)
SHARE = "Reads of a hot set keep"
KEPT = "Every write under the mixed load"


def test_readers_keep_their_share_only_while_the_writer_keeps_its_pace():
    assert STEADY.rate == 20.0
    assert _verdict(_mixed(1000.0, 800.0, STEADY), SHARE) is True
    assert _verdict(_mixed(1000.0, 799.0, STEADY), SHARE) is False
    slow = replace(STEADY, sent=269, acknowledged=269, readable=269)  # 17.9/s < 90 % of 20
    assert _verdict(_mixed(1000.0, 1000.0, slow), SHARE) is False
    assert _verdict(_reads_at({}), SHARE) is None


def test_every_acknowledged_write_must_be_readable_and_none_refused():
    assert _verdict(_mixed(1000.0, 900.0, STEADY), KEPT) is True
    lost = replace(STEADY, readable=299)
    assert _verdict(_mixed(1000.0, 900.0, lost), KEPT) is False
    refused = replace(STEADY, acknowledged=299, readable=299, refused={"503": 1})
    assert refused.errors == 1
    assert _verdict(_mixed(1000.0, 900.0, refused), KEPT) is False
    nothing = Writes(sent=0, acknowledged=0, seconds=15.0)
    assert _verdict(_mixed(1000.0, 900.0, nothing), KEPT) is False

    section = report.comparison_section(_mixed(1000.0, 900.0, refused))
    assert "Reads with the writer ÷ alone: 0.90x" in section
    assert "299 acknowledged (201), 1 errors (503: 1)" in section


# ---------------------------------------------------------------- paths, credentials, wrk


def test_the_sampled_paths_are_distinct_and_the_same_on_every_run():
    every = [f"/posts/{n}/post" for n in range(1, 5001)]
    chosen = paths.choose(every, 1000, seed=3)
    assert len(set(chosen)) == 1000
    assert chosen == paths.choose(every, 1000, seed=3)
    assert chosen != paths.choose(every, 1000, seed=4)
    assert sorted(paths.choose(every[:10], 1000, seed=3)) == sorted(every[:10])


def test_each_route_sends_its_own_credentials():
    credentials = Credentials("u", token="t0k", cookie="inkwell_session=abc")
    assert credentials.headers("none") == {}
    assert credentials.headers("session") == {"Cookie": "inkwell_session=abc"}
    assert wrk_headers(credentials.headers("bearer")) == ["Authorization: Bearer t0k"]


def test_the_paths_file_reaches_the_script_after_the_url():
    command = load.wrk_command("http://h/", load.Load(32, 2), load.PATHS_SCRIPT, [], ["f.txt"])
    assert command[-3:] == ["http://h/", "--", "f.txt"]
    assert load.wrk_command("http://h/", load.Load(1, 2), load.READ_SCRIPT, [])[-1] == "http://h/"


def test_counted_requests_vary_their_path_as_the_load_does(tmp_path: Path):
    listed = tmp_path / "paths.txt"
    listed.write_text("/posts/1/a\n/posts/2/b\n/posts/3/c\n", encoding="utf-8")
    crawl = Route("random", "/posts/1/a", paths_file=str(listed))
    assert [crawl.request_path(n) for n in (1, 2, 3)] == ["/posts/2/b", "/posts/3/c", "/posts/1/a"]
    busted = Route("/ uncached", "/?page=2", uncached=True)
    assert busted.request_path(7) == "/?page=2&nocache=7"
    assert Route("/", "/").request_path(7) == "/"
    assert crawl.path == "/posts/1/a"


def test_the_hot_set_is_warmed_until_enough_reads_were_made():
    asked: list[float] = []

    def read(seconds: float) -> LoadResult:
        asked.append(seconds)
        return _load(1.0, rps=1000.0 / 15)  # 1,000 requests per round

    assert mixed.warm_up(read, 2.0, requests=3001) == 4
    assert asked == [2.0] * 4
    assert mixed.warm_up(read, 2.0, requests=3000) == 3
    # A server too slow to make them in time is warmed for MAX_WARM_S, not forever.
    assert mixed.warm_up(read, 2.0, requests=10**9) == mixed.MAX_WARM_S / 2
