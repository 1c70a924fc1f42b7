"""Run the real application (`inkwell serve`) in a subprocess for tests that need a process."""

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.commands import inkwell
from tests.support.pg import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30


def migrate(database_url: str) -> None:
    """`inkwell migrate`, as a deployment runs it."""
    env = {**os.environ, "DATABASE_URL": database_url}
    subprocess.run(inkwell("migrate"), cwd=ROOT, env=env, check=True, capture_output=True)


def server_env(database_url: str, media_dir: Path, **extra: str) -> dict[str, str]:
    # Mail written as files (no SMTP_HOST given) lands beside the media, not in the checkout.
    outbox = str(media_dir.parent / "outbox")
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDIA_DIR": str(media_dir),
        "OUTBOX_DIR": outbox,
        # Test accounts are all new: the posting limit for them has tests of its own.
        "NEW_ACCOUNT_PERIOD_HOURS": "0",
        **extra,
    }


def server_command(port: int, workers: int) -> list[str]:
    """The real server on a loopback port: `inkwell serve`, as `make run` starts it."""
    return inkwell(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    )


@contextmanager
def running_server(
    database_url: str, media_dir: Path, workers: int = 1, **extra_env: str
) -> Iterator[str]:
    """Serve the app on a free loopback port; yield its base URL; stop it on exit."""
    port = free_port()
    env = server_env(database_url, media_dir, **extra_env)
    command = server_command(port, workers)
    log_path = media_dir.parent / f"server-{port}.log"
    media_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        try:
            if httpx.get(base_url + "/api/posts", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not start in time")
