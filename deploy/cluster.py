"""A small Inkwell cluster on one machine: hosts in network namespaces, nothing leaves it.

    python deploy/cluster.py up [--apps 2] [--env KEY=VALUE ...]   # prints the URL last
    python deploy/cluster.py down
    python deploy/cluster.py kill|stop|start HOST                   # HOST: app1, app2, ...
    python deploy/cluster.py deploy HOST     # drain at the balancer, restart, send to it again
    python deploy/cluster.py restart-db

Each host is a namespace (`ip netns`) joined to one bridge by a veth pair: `db` runs
PostgreSQL, `app1`… run Inkwell from deploy/inkwell.service (its environment file, working
directory and command line, as systemd would) with a media directory of their own, and `lb`
runs Debian's nginx with deploy/nginx.conf. A forwarder on the machine's loopback carries
https://127.0.0.1:8088 to the balancer. Needs root (namespaces), nginx, openssl and the
PostgreSQL 15 server binaries. Only the standard library: it runs before anything is set up.
"""

import argparse
import asyncio
import configparser
import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
STATE = Path(os.environ.get("CLUSTER_DIR", "/tmp/inkwell-cluster"))
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# Names and addresses are settings so that two clusters (two test runs) can coexist.
PREFIX = os.environ.get("CLUSTER_NAME", "ink")
BRIDGE = f"{PREFIX}-br"
SUBNET = os.environ.get("CLUSTER_SUBNET", "10.77.0")
GATEWAY = f"{SUBNET}.1"
DB_ADDRESS = f"{SUBNET}.10"
LB_ADDRESS = f"{SUBNET}.20"
APP_PORT = 8000
PUBLIC = ("127.0.0.1", int(os.environ.get("CLUSTER_PORT", "8088")))
# The unit's paths on a real machine, replaced by this checkout and the host's own folder.
UNIT_ROOT = "/srv/inkwell"
READY_TIMEOUT_S = 90


def app_address(index: int) -> str:
    return f"{SUBNET}.{10 + index}"


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {shlex.join(command)}\n{result.stderr}")
    return result


def in_host(host: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", f"{PREFIX}-{host}", *command]


# ---------------------------------------------------------------- network


def add_host(host: str, address: str) -> None:
    """A namespace with one interface, eth0, on the cluster's bridge."""
    namespace = outside = f"{PREFIX}-{host}"
    run("ip", "netns", "add", namespace)
    run("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
    run("ip", "link", "set", outside, "master", BRIDGE, "up")
    run(*in_host(host, "ip", "addr", "add", f"{address}/24", "dev", "eth0"))
    run(*in_host(host, "ip", "link", "set", "eth0", "up"))
    run(*in_host(host, "ip", "link", "set", "lo", "up"))
    run(*in_host(host, "ip", "route", "add", "default", "via", GATEWAY))


def network_up(apps: int) -> None:
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    add_host("db", DB_ADDRESS)
    add_host("lb", LB_ADDRESS)
    for index in range(1, apps + 1):
        add_host(f"app{index}", app_address(index))


def network_down() -> None:
    namespaces = run("ip", "netns", "list", check=False).stdout.split()
    for namespace in namespaces:
        if namespace.startswith(f"{PREFIX}-"):
            # Whatever still runs in it (a crashed run's leftovers) goes with it.
            pids = run("ip", "netns", "pids", namespace, check=False).stdout.split()
            for pid in pids:
                _signal(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", namespace, check=False)
    run("ip", "link", "del", BRIDGE, check=False)


# ---------------------------------------------------------------- PostgreSQL


def _as_postgres(*command: str) -> list[str]:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        run("useradd", "--system", "--no-create-home", "postgres")
    return ["runuser", "-u", "postgres", "--", *command]


def database_up(password: str) -> str:
    data, sockets = STATE / "db" / "data", STATE / "db" / "sockets"
    sockets.mkdir(parents=True)
    shutil.chown(STATE / "db", "postgres")
    shutil.chown(sockets, "postgres")
    run(*_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                      "--auth-local=trust", "--auth-host=scram-sha-256"))  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"listen_addresses = '{DB_ADDRESS}'\nunix_socket_directories = '{sockets}'\n")
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {SUBNET}.0/24 scram-sha-256\n")
    _pg_ctl("start")
    psql = [str(PG_BIN / "psql"), "-h", str(sockets), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
    run(*_as_postgres(*psql, "-c", f"CREATE ROLE inkwell LOGIN PASSWORD '{password}'"))
    run(*_as_postgres(*psql, "-c", "CREATE DATABASE inkwell OWNER inkwell"))
    return f"postgresql+psycopg://inkwell:{password}@{DB_ADDRESS}:5432/inkwell"


def _pg_ctl(action: str) -> None:
    data, log = STATE / "db" / "data", STATE / "db" / "postgres.log"
    command = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w")
    extra = ["-m", "fast"] if action in ("stop", "restart") else []
    run(*in_host("db", *command, *extra, action))


# ---------------------------------------------------------------- app hosts


def read_unit() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(DEPLOY / "inkwell.service")
    return unit["Service"]


def read_environment_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def write_app_environment(host: str, common: dict[str, str]) -> Path:
    folder = STATE / host
    for name in ("media", "outbox"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    environment = {
        **common,
        # The site's names, and the host's own address for probes sent to it directly.
        "ALLOWED_HOSTS": f"{common['ALLOWED_HOSTS']},{app_address(int(host.removeprefix('app')))}",
        "MEDIA_DIR": str(folder / "media"),
        "OUTBOX_DIR": str(folder / "outbox"),
    }
    path = folder / "inkwell.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in environment.items()))
    return path


def start_app(host: str) -> None:
    """Start the host's server as systemd would from the unit, in the host's namespace."""
    service = read_unit()
    folder = STATE / host
    environment = read_environment_file(folder / "inkwell.env")
    command = shlex.split(service["ExecStart"].replace(UNIT_ROOT, str(ROOT)))
    working_directory = service["WorkingDirectory"].replace(UNIT_ROOT, str(ROOT))
    with (folder / "server.log").open("a") as log:
        process = subprocess.Popen(
            in_host(host, *command),
            cwd=working_directory,
            env={"PATH": os.environ["PATH"], **environment},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill reaches every worker
        )
    (folder / "pid").write_text(str(process.pid))


def _group(host: str) -> int | None:
    try:
        return int((STATE / host / "pid").read_text())
    except (OSError, ValueError):
        return None


def _signal(pid: int, signum: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(pid, signum)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_app(host: str) -> None:
    """kill -9 every process of the host at once, as a power cut would."""
    group = _group(host)
    if group:
        _signal(group, signal.SIGKILL, group=True)
        _wait_gone(group, 10)


def stop_app(host: str) -> None:
    """SIGTERM as systemd sends it, then wait for the drain (TimeoutStopSec, then SIGKILL)."""
    group = _group(host)
    if not group:
        return
    _signal(group, signal.SIGTERM, group=True)
    if not _wait_gone(group, float(read_unit()["TimeoutStopSec"])):
        _signal(group, signal.SIGKILL, group=True)
        _wait_gone(group, 10)


def _wait_gone(group: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(group, os.WNOHANG)
        if not _alive(group):
            return True
        time.sleep(0.05)
    return False


def wait_ready(url: str) -> None:
    certificate = STATE / "lb" / "cert.pem"
    trusted = ssl.create_default_context(cafile=certificate) if certificate.exists() else None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=trusted) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"not ready after {READY_TIMEOUT_S} s: {url}")


def app_ready_url(host: str) -> str:
    return f"http://{app_address(int(host.removeprefix('app')))}:{APP_PORT}/readyz"


# ---------------------------------------------------------------- balancer


def write_site(drained: set[str]) -> None:
    """deploy/nginx.conf with this cluster's hosts (those drained marked `down`),
    certificate and name."""
    folder = STATE / "lb"
    apps = int((STATE / "apps").read_text())
    site = (DEPLOY / "nginx.conf").read_text()
    servers = "".join(
        f"    server {app_address(i)}:{APP_PORT} max_fails=1 fail_timeout=5s"
        f"{' down' if f'app{i}' in drained else ''};\n"
        for i in range(1, apps + 1)
    )
    site = re.sub(r"(?m)^    server 10\.0\.0\.\d+:8000 .*\n", "", site)
    site = site.replace("upstream inkwell {\n", "upstream inkwell {\n" + servers, 1)
    site = site.replace("/etc/ssl/certs/blog.example.org.pem", str(folder / "cert.pem"))
    site = site.replace("/etc/ssl/private/blog.example.org.key", str(folder / "key.pem"))
    site = site.replace("server_name blog.example.org;", "server_name 127.0.0.1 localhost;")
    # Which host answered, on every response, so that the tests can address the other one.
    site = site.replace(
        "    location / {\n",
        "    location / {\n        add_header X-Served-By $upstream_addr always;\n",
        1,
    )
    (folder / "inkwell.conf").write_text(site)
    (folder / "drained").write_text("".join(f"{host}\n" for host in sorted(drained)))


def drained_hosts() -> set[str]:
    path = STATE / "lb" / "drained"
    return set(path.read_text().split()) if path.exists() else set()


def reload_balancer(drained: set[str]) -> None:
    """New configuration for new connections; waits until every nginx worker that had the old
    one has finished its requests and gone."""
    write_site(drained)
    master = int((STATE / "lb" / "nginx.pid").read_text())
    old_workers = _children(master)
    run(*in_host("lb", "nginx", "-c", str(STATE / "lb" / "nginx.conf"), "-s", "reload"))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while _children(master) & old_workers or not _children(master):
        if time.monotonic() > deadline:
            raise SystemExit("nginx's old workers did not finish")
        time.sleep(0.05)


def _children(pid: int) -> set[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: set[int] = set()
    for task in tasks.iterdir() if tasks.exists() else ():
        with contextlib.suppress(OSError):
            found.update(int(child) for child in (task / "children").read_text().split())
    return found


def deploy_host(host: str) -> None:
    """A rolling deploy's step for one host: the balancer stops sending it new requests,
    SIGTERM lets the ones in flight finish, the new process starts, and once it is ready
    the balancer sends to it again."""
    reload_balancer(drained_hosts() | {host})
    stop_app(host)
    start_app(host)
    wait_ready(app_ready_url(host))
    reload_balancer(drained_hosts() - {host})


def balancer_config(apps: int) -> Path:
    """A certificate of the cluster's own, the site, and a top-level file around it."""
    folder = STATE / "lb"
    (folder / "temp").mkdir(parents=True)
    (STATE / "apps").write_text(str(apps))
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"))  # fmt: skip
    write_site(set())
    temp = folder / "temp"
    top = f"""worker_processes 2;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # Which host answered each request, for the cluster's tests.
    log_format upstream '$request_method $request_uri $status $upstream_addr';
    access_log {folder}/access.log upstream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {folder}/inkwell.conf;
}}
"""
    (folder / "nginx.conf").write_text(top)
    return folder / "nginx.conf"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(connect, *listen)
    async with server:
        await server.serve_forever()


def start_forwarder() -> None:
    with (STATE / "lb" / "forwarder.log").open("a") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, "forward"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (STATE / "forwarder.pid").write_text(str(process.pid))
    wait_ready(f"https://{PUBLIC[0]}:{PUBLIC[1]}/healthz")


# ---------------------------------------------------------------- commands


def up(apps: int, extra: list[str]) -> None:
    down()
    STATE.mkdir(parents=True)
    # PostgreSQL runs as its own user and must reach its folder inside this one.
    for folder in (STATE, *STATE.parents):
        if folder.stat().st_mode & 0o001 == 0:
            raise SystemExit(
                f"{folder} is not searchable by other users: choose another CLUSTER_DIR"
            )
    network_up(apps)
    database_url = database_up(secrets.token_hex(16))
    common = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DEBUG": "false",
        "SECURE_COOKIES": "true",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "WEB_CONCURRENCY": "2",
        "GRACEFUL_TIMEOUT": "10",
        # Uploads in PostgreSQL: a picture stored through one host is served by every host
        # (each host's own MEDIA_DIR stays empty).
        "MEDIA_STORAGE": "database",
        # uvicorn believes X-Forwarded-For/-Proto from the balancer alone.
        "FORWARDED_ALLOW_IPS": LB_ADDRESS,
        **dict(pair.split("=", 1) for pair in extra),
    }
    migrate = [str(ROOT / ".venv" / "bin" / "inkwell"), "migrate"]
    subprocess.run(in_host("app1", *migrate), check=True, env={**os.environ, **common})
    hosts = [f"app{i}" for i in range(1, apps + 1)]
    for host in hosts:
        write_app_environment(host, common)
        start_app(host)
    for host in hosts:
        wait_ready(app_ready_url(host))
    run(*in_host("lb", "nginx", "-c", str(balancer_config(apps))))
    start_forwarder()
    print(f"https://{PUBLIC[0]}:{PUBLIC[1]}", flush=True)


def down() -> None:
    if STATE.exists():
        for pid_file in STATE.glob("*/pid"):
            kill_app(pid_file.parent.name)
        forwarder = STATE / "forwarder.pid"
        if forwarder.exists():
            _signal(int(forwarder.read_text()), signal.SIGKILL, group=True)
        if (STATE / "db" / "data" / "postmaster.pid").exists():
            _pg_ctl("stop")
    network_down()
    shutil.rmtree(STATE, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up")
    start.add_argument("--apps", type=int, default=2, choices=(2, 3))
    start.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    commands.add_parser("down")
    commands.add_parser("restart-db")
    commands.add_parser("forward")
    for name in ("kill", "stop", "start", "deploy"):
        commands.add_parser(name).add_argument("host")
    arguments = parser.parse_args()
    match arguments.command:
        case "up":
            up(arguments.apps, arguments.env)
        case "down":
            down()
        case "restart-db":
            _pg_ctl("restart")
        case "forward":
            asyncio.run(_forward(PUBLIC, (LB_ADDRESS, 443)))
        case "kill":
            kill_app(arguments.host)
        case "stop":
            stop_app(arguments.host)
        case "start":
            start_app(arguments.host)
            wait_ready(app_ready_url(arguments.host))
        case "deploy":
            deploy_host(arguments.host)


if __name__ == "__main__":
    main()
