"""A uvicorn server group for crash and multi-worker tests.

`ServerGroup` runs uvicorn in a process group of its own, so the master and every worker can be
killed at once with SIGKILL (a real crash) and started again on the same port. `worker_serving`
tells which worker process holds a given client connection, read from /proc (Linux).

`separate_workers` runs each worker as a server of its own on its own port, for tests that must
send a request to a given worker: with one shared socket the kernel picks the worker, and no
test can choose.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.pg import free_port
from tests.support.server import ROOT, server_command, server_env

# Short, so a test can wait it out, yet longer than an upload takes: with none, a worker that
# starts a moment after its sibling removes the sibling's upload in flight.
ORPHAN_GRACE_S = 2
STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
CLIENT_TIMEOUT_S = 30


class ServerGroup:
    """uvicorn in its own session (process group), with a log file next to the media dir."""

    def __init__(
        self,
        database_url: str,
        media_dir: Path,
        workers: int = 2,
        clock_file: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = extra_env or {}
        self.database_url = database_url
        self.media_dir = media_dir
        self.workers = workers
        self.clock_file = clock_file
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = media_dir.parent / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None, "already running"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        extra = {"UPLOAD_ORPHAN_GRACE_SECONDS": str(ORPHAN_GRACE_S), **self.extra_env}
        if self.clock_file is not None:
            extra["CLOCK_FILE"] = str(self.clock_file)
        env = server_env(self.database_url, self.media_dir, **extra)
        command = server_command(self.port, self.workers)
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts + 1} ====\n".encode())
            log.flush()
            log_offset = log.tell()
            # A session of its own: os.killpg reaches the master and the workers it spawns.
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )
        self.starts += 1
        self._wait_until_up(log_offset)

    def _wait_until_up(self, log_offset: int) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"server exited:\n{self.log_tail()}")
            # Every worker must be serving, or the first requests all go to the one that is.
            with self.log_path.open("rb") as log:
                log.seek(log_offset)
                ready = log.read().count(b"Application startup complete.")
            if ready >= self.workers:
                try:
                    if httpx.get(self.base_url + "/api/posts", timeout=2).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not start in time:\n{self.log_tail()}")

    def worker_pids(self) -> set[int]:
        """The worker processes: the master's children started by multiprocessing's spawn
        (its resource tracker is a child too, and serves nothing)."""
        if self.process is None:
            return set()
        children: set[int] = set()
        task_dir = Path(f"/proc/{self.process.pid}/task")
        try:
            for task in task_dir.iterdir():
                children.update(int(pid) for pid in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            return set()
        return {pid for pid in children if b"spawn_main" in _cmdline(pid)}

    def kill(self) -> None:
        """SIGKILL the whole group: master and workers die mid-request, as in a crash."""
        if self.process is None:
            return
        workers = self.worker_pids()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None
        _wait_gone(workers)

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if that takes too long."""
        if self.process is None:
            return
        workers = self.worker_pids()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except ProcessLookupError:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        self.process = None
        _wait_gone(workers)

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "ServerGroup":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def separate_workers(
    database_url: str, media_dir: Path, count: int = 2, clock_file: Path | None = None
) -> Iterator[list[ServerGroup]]:
    """`count` single-worker servers on one database, each on its own port, started and
    stopped together: worker i is addressed as `servers[i].base_url`."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                ServerGroup(database_url, media_dir, workers=1, clock_file=clock_file)
            )
            for _ in range(count)
        ]


def _wait_gone(pids: set[int]) -> None:
    """Wait until the processes are dead (orphaned workers are reaped by init, or are zombies,
    which hold no sockets)."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _running(pid)]
        if not alive:
            return
        time.sleep(0.02)
    raise RuntimeError(f"processes still running: {alive}")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# ---------------------------------------------------------------- which worker holds a connection


def served_by(server: "ServerGroup", response: httpx.Response) -> int | None:
    """The worker that answered `response` (its connection must still be open)."""
    return worker_serving(server, client_port(response))


def client_port(response: httpx.Response) -> int:
    """The local port of the (still open) connection `response` came over."""
    stream = response.extensions["network_stream"]
    return stream.get_extra_info("client_addr")[1]


def worker_serving(server: ServerGroup, port: int) -> int | None:
    """The pid of the worker whose socket is connected to our local `port`, from /proc.

    The kernel hands each new connection to whichever worker accepts it first; there is no
    way to choose, but an open connection belongs to exactly one process and /proc shows which.
    """
    inode = _socket_inode(server.port, port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in server.worker_pids():
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            descriptors = list(fd_dir.iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) == target:
                    return pid
            except OSError:
                continue
    return None


def _socket_inode(server_port: int, peer_port: int) -> str | None:
    """Inode of the server-side socket of the connection 127.0.0.1:peer → 127.0.0.1:server."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if (
            int(local.split(":")[1], 16) == server_port
            and int(remote.split(":")[1], 16) == peer_port
        ):
            return inode
    return None


def fresh_client(base_url: str, cookies: dict[str, str] | None = None) -> httpx.Client:
    """A client with no pooled connection: its first request opens a new TCP connection."""
    return httpx.Client(base_url=base_url, cookies=cookies, timeout=CLIENT_TIMEOUT_S)


# ---------------------------------------------------------------- accounts and pictures
