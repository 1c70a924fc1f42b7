"""The simulated cluster of deploy/cluster.py, driven from the tests: the very script that
`make cluster` runs, so what the tests prove is what an operator starts."""

import itertools
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.support.load import (
    CLIENT_TIMEOUT_S,
    ClientThread,
    Ledger,
    PageReader,
    PostWriter,
    check_posts,
)
from tests.support.pg import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "cluster.py"
UP_TIMEOUT_S = 240
_runs = itertools.count(1)


def missing_requirement() -> str | None:
    """Why this machine cannot build the cluster, if it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for program in ("ip", "nginx", "openssl"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


@dataclass
class Cluster:
    url: str
    state: Path
    environment: dict[str, str]

    @property
    def app_addresses(self) -> set[str]:
        """host:port of each app host, as the balancer names them."""
        subnet = self.environment["CLUSTER_SUBNET"]
        return {f"{subnet}.{10 + index}:8000" for index in (1, 2)}

    def command(self, *arguments: str) -> None:
        subprocess.run(
            [sys.executable, str(SCRIPT), *arguments],
            check=True,
            env=self.environment,
            timeout=UP_TIMEOUT_S,
        )

    def trusted(self) -> ssl.SSLContext:
        """A TLS context that trusts the cluster's own certificate."""
        return ssl.create_default_context(cafile=self.state / "lb" / "cert.pem")

    def database_url(self) -> str:
        """The URL every app host is given (reachable from the machine too)."""
        settings = (self.state / "app1" / "inkwell.env").read_text().splitlines()
        return next(line.split("=", 1)[1] for line in settings if line.startswith("DATABASE_URL="))

    def client(self) -> httpx.Client:
        """A browser-like client: its own cookies, trusting the cluster's certificate."""
        return httpx.Client(
            base_url=self.url,
            verify=self.trusted(),
            timeout=CLIENT_TIMEOUT_S,
        )

    def get_elsewhere(
        self, client: httpx.Client, path: str, not_from: str, **kwargs: object
    ) -> httpx.Response:
        """GET `path` through the balancer until a host other than `not_from` answers it (the
        balancer takes turns, so this is the next request or the one after)."""
        for _ in range(6):
            response = client.get(path, **kwargs)  # type: ignore[arg-type]
            if served_by(response) != not_from:
                return response
        raise AssertionError(f"only {not_from} answered {path}")

    def get_from_each(self, client: httpx.Client, path: str) -> dict[str, httpx.Response]:
        """GET `path` through the balancer until every app host has answered it once:
        app host -> its answer."""
        answers: dict[str, httpx.Response] = {}
        for _ in range(8):
            response = client.get(path)
            answers.setdefault(served_by(response), response)
            if set(answers) == self.app_addresses:
                return answers
        raise AssertionError(f"only {sorted(answers)} answered {path}")

    def other_than(self, address: str) -> str:
        """An app host (host:port) other than `address`."""
        return sorted(self.app_addresses - {address})[0]

    def post_to(
        self, address: str, client: httpx.Client, path: str, **kwargs: object
    ) -> httpx.Response:
        """POST straight to the app host at `address` (host:port), not through the balancer,
        with `client`'s cookies; the cookies it sets are kept in `client`. (The cookies are
        marked Secure and this is plain http, so they are carried by hand.)"""
        cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in client.cookies.jar)
        with httpx.Client(base_url=f"http://{address}", timeout=CLIENT_TIMEOUT_S) as direct:
            response = direct.post(path, headers={"Cookie": cookies}, **kwargs)  # type: ignore[arg-type]
        for cookie in response.cookies.jar:
            client.cookies.set(cookie.name, cookie.value, domain=client.base_url.host)
        return response

    def answered(self) -> list[tuple[str, str, str]]:
        """(method, path, app host) of each request so far, oldest first (the balancer's log)."""
        lines = (self.state / "lb" / "access.log").read_text().splitlines()
        return [(method, path, host) for method, path, _, host in map(str.split, lines)]


def served_by(response: httpx.Response) -> str:
    """The app host (host:port) that answered, as the cluster's balancer tells it."""
    return response.headers["x-served-by"]


def _own_subnet() -> str:
    pid = os.getpid()
    return f"10.{100 + pid // 256 % 150}.{pid % 256}"


def bridge_address() -> str:
    """This process's cluster's address on the machine itself (the bridge's): what the app
    hosts reach a server of the test's at (a mail catcher listening on every address)."""
    return f"{_own_subnet()}.1"


def _own_network() -> dict[str, str]:
    """Names, addresses and a port of this process's own, so that clusters of two test
    processes never meet."""
    return {
        "CLUSTER_NAME": f"c{os.getpid()}",
        "CLUSTER_SUBNET": _own_subnet(),
        "CLUSTER_PORT": str(free_port()),
    }


@contextmanager
def running_cluster(*env: str) -> Iterator[Cluster]:
    """`deploy/cluster.py up` for the duration, with extra KEY=VALUE settings for the apps."""
    # The load's writers are accounts made moments before: the limit on new accounts' posts
    # has tests of its own.
    pairs = ("NEW_ACCOUNT_PERIOD_HOURS=0", *env)
    arguments = [argument for pair in pairs for argument in ("--env", pair)]
    # Not under pytest's temporary folder: PostgreSQL's own user could not enter it.
    state = Path(tempfile.mkdtemp(prefix="inkwell-cluster-"))
    state.chmod(0o755)
    environment = {**os.environ, **_own_network(), "CLUSTER_DIR": str(state)}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "up", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=UP_TIMEOUT_S,
    )
    url = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    cluster = Cluster(url=url, state=state, environment=environment)
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        yield cluster
    finally:
        subprocess.run([sys.executable, str(SCRIPT), "down"], env=environment, timeout=UP_TIMEOUT_S)
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------- load with a fault in the middle


@dataclass
class FaultRun:
    """What a load run through the balancer saw, and what the database holds after it."""

    ledger: Ledger
    in_flight_at_fault: int
    found: int
    problems: list[str]

    @property
    def unexpected(self) -> list[str]:
        """Answers other than the ones asked for, apart from the balancer's 502/503/504."""
        return [line for line in self.ledger.problems if not re.search(r" -> 50[234]: ", line)]

    def summary(self, scenario: str) -> str:
        ledger = self.ledger
        return (
            f"\ncluster {scenario}: {ledger.requests} requests, {ledger.errors} errors "
            f"({self.in_flight_at_fault} in flight at the fault), "
            f"{ledger.acknowledged_writes} writes acknowledged, {self.found} found, "
            f"{ledger.resent} resent after the balancer closed a kept-alive connection; "
            f"{ledger.statuses_text()}"
        )


def stored_posts(database_url: str, prefix: str) -> dict[int, tuple[str, str]]:
    """The posts whose title starts with `prefix`: id -> (title, content), read from the
    database directly, not through the app."""
    engine = create_engine(database_url)
    query = text("SELECT id, title, content FROM posts WHERE title LIKE :pattern")
    try:
        with engine.connect() as connection:
            rows = connection.execute(query, {"pattern": f"{prefix}-%"}).all()
    finally:
        engine.dispose()
    return {row.id: (row.title, row.content) for row in rows}


def run_with_fault(
    cluster: Cluster,
    tokens: list[str],
    fault: Callable[[], None],
    *,
    seconds: float,
    clients: int = 32,
) -> FaultRun:
    """`clients` clients (a quarter writing through the API with `tokens`, the rest reading)
    for `seconds`,
    with `fault` run a third of the way in; then every acknowledged write is looked for."""
    trusted = cluster.trusted()
    prefix = f"load{next(_runs)}"
    ledger, stop = Ledger(resend_on_closed_connection=True), threading.Event()
    writers = clients // 4
    threads: list[ClientThread] = [
        PostWriter(
            f"{prefix}-writer{n}",
            cluster.url,
            tokens[n % len(tokens)],
            ledger,
            stop,
            verify=trusted,
            deletes_may_be_resent=True,
        )
        for n in range(writers)
    ]
    threads += [
        PageReader(f"{prefix}-reader{n}", cluster.url, ledger, stop, verify=trusted)
        for n in range(clients - writers)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        stop.wait(seconds / 3)
        in_flight = ledger.in_flight
        fault()
        stop.wait(max(0.0, seconds - (time.monotonic() - started)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 10)
    found, problems = check_posts(ledger, stored_posts(cluster.database_url(), prefix))
    return FaultRun(ledger, in_flight, found, problems)
