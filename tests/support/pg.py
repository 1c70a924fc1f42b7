"""A throwaway PostgreSQL 15 cluster for the test suite: initdb + pg_ctl in a temp dir."""

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_TEST_PORT = 10_000


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = 32_768, 60_999
    return range(low, high + 1)


def free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range.

    A server on an ephemeral port can lose it while it restarts: a client connecting to the
    empty port may be given that very port as its own, and connects to itself (TCP
    simultaneous open), holding the port. Ports below the range are never handed out so.
    """
    ephemeral = _ephemeral_ports()
    choices = range(LOWEST_TEST_PORT, ephemeral.start)
    for _ in range(1000):
        port = random.choice(choices)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _as_server_user(command: list[str]) -> list[str]:
    # The server refuses to run as root; drop to the postgres account when we are root.
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True)
    return ["runuser", "-u", SERVER_USER, "--", *command]


class PostgresCluster:
    """Start with `start()`, stop with `stop()`; `url(db)` gives a SQLAlchemy URL."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="inkwell-pg-"))
        self.data = self.root / "data"
        self.port = free_port()

    def _run(self, *args: str) -> None:
        command = _as_server_user([str(PG_BIN / args[0]), *args[1:]])
        subprocess.run(command, check=True, capture_output=True, text=True)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        # Durability settings are off: this cluster lives for one test run.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
