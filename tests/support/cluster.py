"""The simulated cluster of deploy/cluster.py, driven from the tests: the very script that
`make cluster` runs, so what the tests prove is what an operator starts."""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.pg import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "cluster.py"
CLIENT_TIMEOUT_S = 30
UP_TIMEOUT_S = 240


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

    def client(self) -> httpx.Client:
        """A browser-like client: its own cookies, trusting the cluster's certificate."""
        return httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=self.state / "lb" / "cert.pem"),
            timeout=CLIENT_TIMEOUT_S,
        )

    def answered(self) -> list[tuple[str, str, str]]:
        """(method, path, app host) of each request so far, oldest first (the balancer's log)."""
        lines = (self.state / "lb" / "access.log").read_text().splitlines()
        return [(method, path, host) for method, path, _, host in map(str.split, lines)]


def _own_network() -> dict[str, str]:
    """Names, addresses and a port of this process's own, so that clusters of two test
    processes never meet."""
    pid = os.getpid()
    return {
        "CLUSTER_NAME": f"c{pid}",
        "CLUSTER_SUBNET": f"10.{100 + pid // 256 % 150}.{pid % 256}",
        "CLUSTER_PORT": str(free_port()),
    }


@contextmanager
def running_cluster(*env: str) -> Iterator[Cluster]:
    """`deploy/cluster.py up` for the duration, with extra KEY=VALUE settings for the apps."""
    arguments = [argument for pair in env for argument in ("--env", pair)]
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
