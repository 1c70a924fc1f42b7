"""Run an ASGI app under uvicorn exactly as production would (2 workers, uvloop, httptools,
no access log) on a free loopback port, and read its workers' peak memory from /proc."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "bench" / "data" / "logs"
# Inkwell's own app plus the ceiling route: every Inkwell figure comes from this app.
INKWELL_APP = "bench.ceiling_app:app"
HOST = "127.0.0.1"
WORKERS = 2
# Long enough for a first start that re-renders every post of a large dataset.
STARTUP_TIMEOUT_S = 900
STOP_TIMEOUT_S = 30
PROBE_TIMEOUT_S = 5
READY_LINE = b"Application startup complete."
# Outside DEBUG the app refuses to start without a long, non-default key.
SECRET_KEY = "bench-only-secret-key-" + "0123456789abcdef" * 3


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def worker_pids(self) -> list[int]:
        return worker_pids(self.process.pid)

    def peak_rss_mb(self) -> list[float]:
        """VmHWM (peak resident set) of each worker process, in MB."""
        return [peak_rss_mb(pid) for pid in self.worker_pids()]


def app_environment(database_url: str) -> dict[str, str]:
    """What the benchmarked processes run with: production settings on the dataset."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The benchmark's writers are accounts made moments ago; it measures writing, not the
        # limit on what new accounts may post.
        "NEW_ACCOUNT_PERIOD_HOURS": "0",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def uvicorn_command(app: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]


@contextlib.contextmanager
def serving(app: str, database_url: str, log_dir: Path, probe_path: str) -> Iterator[Server]:
    """Start `app` (module:attribute), wait until every worker answers, stop it on exit."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{app.replace(':', '-')}-{port}.log"
    with log_path.open("wb") as log:
        # A session of its own, so the master and its workers stop together.
        process = subprocess.Popen(
            uvicorn_command(app, port),
            cwd=ROOT,
            env=app_environment(database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://{HOST}:{port}", log_path)
    try:
        _wait_until_up(server, probe_path)
        yield server
    finally:
        stop(process)


def _wait_until_up(server: Server, probe_path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{_tail(server.log_path)}")
        if server.log_path.read_bytes().count(READY_LINE) >= WORKERS:
            status = _probe(server.base_url + probe_path)
            if status == 200:
                return
            # A broken app would otherwise be waited for until the start-up timeout.
            if status is not None and status >= 500:
                raise RuntimeError(f"{probe_path} answered {status}:\n{_tail(server.log_path)}")
        time.sleep(0.2)
    raise RuntimeError(f"server did not start in {STARTUP_TIMEOUT_S} s:\n{_tail(server.log_path)}")


def _probe(url: str) -> int | None:
    """The status `url` answers with, or None while nothing listens."""
    try:
        return httpx.get(url, timeout=PROBE_TIMEOUT_S).status_code
    except httpx.TransportError:
        return None


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (a graceful shutdown), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def _children(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children.extend(int(child) for child in (task / "children").read_text().split())
    return children


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def worker_pids(master: int) -> list[int]:
    """The master's children that serve requests (multiprocessing's resource tracker is a
    child too, and serves nothing)."""
    return sorted(pid for pid in _children(master) if b"spawn_main" in _cmdline(pid))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
