"""Drive a URL with wrk and read its machine-readable summary (bench/lua/report.lua)."""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
READ_SCRIPT = LUA_DIR / "report.lua"
WRITE_SCRIPT = LUA_DIR / "post.lua"
UNCACHED_SCRIPT = LUA_DIR / "uncached.lua"
# Takes a file of paths as its argument (bench/paths.py) and counts every non-200.
PATHS_SCRIPT = LUA_DIR / "paths.lua"
RESULT_MARKER = "BENCH_RESULT "
# wrk's own per-request timeout; slower responses count as timeouts.
REQUEST_TIMEOUT = "10s"
# On top of the run itself: start-up, the last requests, the summary.
SUBPROCESS_MARGIN_S = 30


@dataclass(frozen=True)
class Load:
    """How hard to push: open connections, wrk threads and seconds."""

    connections: int
    seconds: float

    @property
    def threads(self) -> int:
        return min(2, self.connections)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # Connect/read/write errors and timeouts.
    socket_errors: int
    # wrk's own count: responses with a status of 400 or more.
    status_errors: int
    # Responses outside 2xx, counted only by the write script (it looks at every response).
    non_2xx: int | None

    @property
    def failures(self) -> int:
        """Requests that did not succeed: socket errors plus refused responses."""
        refused = self.status_errors if self.non_2xx is None else self.non_2xx
        return self.socket_errors + refused

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def tail_ratio(self) -> float:
        return self.p99_ms / self.p50_ms if self.p50_ms else float("inf")


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("bench: wrk is not installed (apt-get install wrk)")
    return path


def wrk_version() -> str:
    result = subprocess.run(
        [wrk_path(), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return (result.stdout or result.stderr).split("Copyright")[0].strip()


def wrk_command(
    url: str, load: Load, script: Path, headers: list[str], script_args: list[str] | None = None
) -> list[str]:
    command = [
        wrk_path(),
        "--threads",
        str(load.threads),
        "--connections",
        str(load.connections),
        "--duration",
        f"{load.seconds:g}s",
        "--timeout",
        REQUEST_TIMEOUT,
        "--script",
        str(script),
    ]
    for header in headers:
        command += ["--header", header]
    # wrk hands what follows `--` to the script's init(args).
    return [*command, url, *(["--", *script_args] if script_args else [])]


def parse(output: str, *, counts_non_2xx: bool) -> LoadResult:
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            data = json.loads(line.removeprefix(RESULT_MARKER))
            socket_errors = sum(
                data[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
            )
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                socket_errors=socket_errors,
                status_errors=data["status_errors"],
                non_2xx=data["non2xx"] if counts_non_2xx else None,
            )
    raise RuntimeError(f"wrk printed no {RESULT_MARKER.strip()} line:\n{output}")


def run(
    url: str,
    load: Load,
    script: Path = READ_SCRIPT,
    *,
    counts_non_2xx: bool = False,
    headers: list[str] | None = None,
    script_args: list[str] | None = None,
) -> LoadResult:
    """One wrk run against `url` with `script` (and its `script_args`); `counts_non_2xx`
    when the script counts refused responses itself."""
    result = subprocess.run(
        wrk_command(url, load, script, headers or [], script_args),
        capture_output=True,
        text=True,
        timeout=load.seconds + SUBPROCESS_MARGIN_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse(result.stdout, counts_non_2xx=counts_non_2xx)
