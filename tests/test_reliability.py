"""Reliability of the real server: concurrent writers, kill -9, several workers (backups are
in tests/test_backup.py).

The tests marked `server` start uvicorn (tests/support/server_group.py) and talk to it over
127.0.0.1 only; each prints a one-line summary of what it measured (`pytest -s` shows it).
INKWELL_LOAD_SECONDS sets how long the concurrency test hammers the server (default 8).
"""

import fcntl
import itertools
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from database import IMMEDIATE, make_engine
from tests.support.accounts import PASSWORD, csrf_from
from tests.support.clock import ClockFile
from tests.support.load import (
    CLIENT_TIMEOUT_S,
    Ledger,
    PictureUploader,
    PostWriter,
    check_posts,
    register,
)
from tests.support.server import migrate
from tests.support.server_group import (
    ORPHAN_GRACE_S,
    ServerGroup,
    fresh_client,
    separate_workers,
)

LOAD_SECONDS = float(os.environ.get("INKWELL_LOAD_SECONDS", "8"))
SINGLE_PROCESS_LOAD_SECONDS = max(LOAD_SECONDS, 15)
CLIENTS = 32
USERS = 4
CRASHES = 3
AVATAR_SIDE = 300
_names = itertools.count(1)


# ---------------------------------------------------------------- reading the outcome


def _read(database_url: str, query: str) -> list[Any]:
    """Rows read directly from the database, not through the app."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query)).all())
    finally:
        engine.dispose()


def stored_posts(database_url: str) -> dict[int, tuple[str, str]]:
    """Every post in the database: id -> (title, content)."""
    rows = _read(database_url, "SELECT id, title, content FROM posts")
    return {row.id: (row.title, row.content) for row in rows}


def stored_pictures(database_url: str) -> dict[str, str | None]:
    """username -> image_file."""
    rows = _read(database_url, "SELECT username, image_file FROM users")
    return {row.username: row.image_file for row in rows}


def api_posts(base_url: str) -> dict[int, tuple[str, str]]:
    """Every post as the API lists it, following the pages."""
    posts: dict[int, tuple[str, str]] = {}
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_S) as client:
        for page in range(1, 10_000):
            response = client.get("/api/posts", params={"page": page, "per_page": 100})
            assert response.status_code == 200, response.text
            posts.update((post["id"], (post["title"], post["content"])) for post in response.json())
            if 'rel="next"' not in response.headers.get("link", ""):
                break
    return posts


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def integrity_check(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("PRAGMA integrity_check")]
    finally:
        connection.close()


def run_threads(threads: list[threading.Thread], stop: threading.Event, seconds: float) -> None:
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    join_all(threads)


def join_all(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + CLIENT_TIMEOUT_S + 10
    for thread in threads:
        if thread.ident is not None:  # started
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not [thread.name for thread in threads if thread.is_alive()], "clients hung"


# ---------------------------------------------------------------- 1. concurrency


@pytest.mark.server
@pytest.mark.parametrize(
    ("workers", "seconds"),
    [
        pytest.param(2, LOAD_SECONDS, id="two-workers"),
        # The default `inkwell serve`: one process, where every writer queues on one lock.
        pytest.param(1, SINGLE_PROCESS_LOAD_SECONDS, id="one-process"),
    ],
)
def test_concurrent_writers_lose_nothing(empty_database_url, backend, tmp_path, workers, seconds):
    """32 clients create, edit and delete posts: no 5xx, no "database is locked", and the
    database holds exactly the last acknowledged state of every post."""
    migrate(empty_database_url)
    ledger = Ledger()
    stop = threading.Event()
    with ServerGroup(empty_database_url, tmp_path / "media", workers=workers) as server:
        tokens = [register(server.base_url, f"writer{n}") for n in range(USERS)]
        writers = [
            PostWriter(f"client{n:02d}", server.base_url, tokens[n % USERS], ledger, stop)
            for n in range(CLIENTS)
        ]
        run_threads(writers, stop, seconds)
        stored = stored_posts(empty_database_url)
        listed = api_posts(server.base_url)
        deleted = ledger.deleted_posts()
        with httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT_S) as client:
            still_served = []
            for post_id, record in deleted:
                response = client.get(f"/api/posts/{post_id}")
                # 404, or a newer post that was given the same id (SQLite reuses ids; see
                # test_ids_of_deleted_rows_are_never_reused).
                if response.status_code != 404 and response.json()["title"] == record.title:
                    still_served.append(post_id)
    log = server.log_path.read_text(errors="replace")
    found, problems = check_posts(ledger, stored)
    print(
        f"\nconcurrency [{backend}, {workers} worker(s)]: {ledger.requests} requests sent by "
        f"{CLIENTS} clients in {seconds:g} s, {ledger.errors} errors "
        f"({ledger.busy} of them 503 with Retry-After), "
        f"{ledger.acknowledged_writes} writes acknowledged, {found} writes found "
        f"({len(deleted)} deletions confirmed gone, "
        f"{len(ledger.retired)} ids of deleted posts reused); {ledger.statuses_text()}"
    )
    assert not ledger.problems, (ledger.problems[:10], server.log_tail())
    # Nothing but a 503 with Retry-After, which asks the client to try again (a deadlock
    # PostgreSQL ended by rolling one transaction back; rare, and nothing of it is written).
    assert ledger.server_errors == ledger.busy
    assert not ledger.transport_errors, ledger.transport_errors
    assert "database is locked" not in log
    assert "Traceback" not in log, server.log_tail()
    assert not problems, "\n".join(problems[:20])
    assert found == ledger.acknowledged_writes
    # The API shows exactly what the database holds: deleted posts are gone there too.
    assert listed == stored
    assert still_served == []
    # Enough happened for the above to mean something.
    assert ledger.acknowledged_writes >= CLIENTS
    assert deleted


def test_ids_of_deleted_rows_are_never_reused(client):
    """A deleted post's or user's id never comes back for a newer one.

    Otherwise a link to /posts/N, a feed reader's entry id (the post URL) or an API client
    holding the id silently lands on someone else's post. PostgreSQL's sequences never reuse
    an id; SQLite hands out the highest rowid again once that row is deleted, unless the table
    is declared AUTOINCREMENT. (The concurrency test above hits this by chance.)
    """
    headers = {}
    ids = {}
    for name in ("first", "second"):
        account = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        created = client.post("/api/users", json=account)
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]
        token = client.post("/api/token", data={"username": name, "password": PASSWORD})
        headers[name] = {"Authorization": f"Bearer {token.json()['access_token']}"}
    reused = {}

    post = {"title": "Soon gone", "content": "Deleted at once."}
    old_post = client.post("/api/posts", json=post, headers=headers["first"]).json()["id"]
    assert client.delete(f"/api/posts/{old_post}", headers=headers["first"]).status_code == 204
    new_post = client.post("/api/posts", json=post, headers=headers["first"]).json()["id"]
    if new_post == old_post:
        reused["post"] = old_post

    confirmation = {"password": PASSWORD}
    deleted = client.request(
        "DELETE", "/api/users/me", json=confirmation, headers=headers["second"]
    )
    assert deleted.status_code == 204
    account = {"username": "third", "email": "third@example.com", "password": PASSWORD}
    new_user = client.post("/api/users", json=account).json()["id"]
    if new_user == ids["second"]:
        reused["user"] = new_user

    assert reused == {}, "ids of deleted rows were given to new ones"


# ---------------------------------------------------------------- 2. crashes


@pytest.mark.server
def test_kill_9_loses_no_acknowledged_write(empty_database_url, backend, tmp_path):
    """SIGKILL the master and workers three times while posts and pictures are being written;
    every acknowledged write survives, the database is intact and no upload is left behind."""
    migrate(empty_database_url)
    media = tmp_path / "media"
    server = ServerGroup(empty_database_url, media, workers=2)
    ledger = Ledger()
    stop = threading.Event()
    rng = random.Random(backend)
    in_flight_at_crash: list[int] = []
    threads: list[threading.Thread] = []
    try:
        server.start()
        tokens = {f"crash{n}": register(server.base_url, f"crash{n}") for n in range(3)}
        names = itertools.cycle(tokens.values())
        threads = [
            PostWriter(f"writer{n}", server.base_url, next(names), ledger, stop) for n in range(8)
        ]
        threads += [
            PictureUploader(user, server.base_url, token, ledger, stop)
            for user, token in tokens.items()
        ]
        for thread in threads:
            thread.start()
        for crash in range(CRASHES):
            if crash:
                server.start()
            # Let writes get going on this run, then crash at an arbitrary moment.
            target = ledger.acknowledged_writes + 15
            deadline = time.monotonic() + 30
            while ledger.acknowledged_writes < target and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ledger.acknowledged_writes >= target, server.log_tail()
            time.sleep(rng.uniform(0.2, 1.0))
            in_flight_at_crash.append(ledger.in_flight)
            server.kill()
        stop.set()
        join_all(threads)
        integrity = integrity_check(sqlite_path(empty_database_url)) if backend == "sqlite" else []
        # The server must come back on the crashed data and tidy up as it starts: files a
        # crash stranded are removed once older than the grace period (see tests/support/load.py).
        time.sleep(ORPHAN_GRACE_S + 0.5)
        server.start()
        listed = api_posts(server.base_url)
        server.stop()
    finally:
        stop.set()
        server.kill()
        join_all(threads)
    stored = stored_posts(empty_database_url)
    found, problems = check_posts(ledger, stored)
    pictures = stored_pictures(empty_database_url)
    pictures_found, pictures_wrong = check_pictures(ledger, pictures, media / "profile_pics")
    found += pictures_found
    problems += pictures_wrong
    refused = ledger.transport_errors["ConnectError"]
    print(
        f"\ncrash [{backend}]: {len(in_flight_at_crash)} crashes survived "
        f"(requests in flight at each: {in_flight_at_crash}), {ledger.requests} requests sent, "
        f"{ledger.errors - refused} cut off by a crash, {refused} refused while down, "
        f"{ledger.acknowledged_writes} writes acknowledged, {found} writes found; "
        f"{ledger.statuses_text()}"
    )
    assert not ledger.problems, (ledger.problems[:10], server.log_tail())
    assert len(in_flight_at_crash) == CRASHES
    assert all(in_flight_at_crash), "a crash hit no request in flight"
    if backend == "sqlite":
        assert integrity == ["ok"]
    assert not problems, "\n".join([*problems, "server log:", server.log_tail()])
    assert listed == stored


def check_pictures(
    ledger: Ledger, pictures: dict[str, str | None], avatar_dir: Path
) -> tuple[int, list[str]]:
    """Every stored file is a whole 300x300 JPEG that a user points at; every user's picture
    exists; each user's picture is the last acknowledged upload (or a later one whose answer
    the crash swallowed). Returns the acknowledged uploads found and the problems."""
    problems: list[str] = []
    referenced = {name for name in pictures.values() if name}
    files = sorted(path.name for path in avatar_dir.iterdir()) if avatar_dir.exists() else []
    for name in files:
        path = avatar_dir / name
        if name not in referenced:
            if name.startswith("."):
                kind = "temporary file (crash before the rename)"
            elif any(name in names for names in ledger.pictures.values()):
                kind = "superseded picture (crash between the commit and its removal)"
            else:
                kind = "never acknowledged (most likely a crash between rename and commit)"
            problems.append(f"{name} ({path.stat().st_size} B) left behind: {kind}")
            continue
        try:
            with Image.open(path) as picture:
                picture.verify()
            with Image.open(path) as picture:
                picture.load()
                if picture.format != "JPEG" or picture.size != (AVATAR_SIDE, AVATAR_SIDE):
                    problems.append(f"{name} is a {picture.format} of {picture.size}")
        except (OSError, SyntaxError) as exc:
            problems.append(f"{name} is not a complete JPEG: {exc}")
    for user, name in pictures.items():
        if name and name not in files:
            problems.append(f"{user}'s picture {name} is missing from disk")
    found = 0
    for user, acked in ledger.pictures.items():
        name = pictures[user]
        last = acked[-1] if acked else None
        # Only an upload whose answer was lost may have replaced the last acknowledged one.
        if name == last or (ledger.picture_pending[user] and name not in acked):
            found += len(acked)
        else:
            problems.append(f"{user}'s picture is {name}, last acknowledged {last}")
    return found, problems


@pytest.mark.server
def test_concurrent_picture_uploads_leave_no_orphans(empty_database_url, backend, tmp_path):
    """Two clients of one account (a phone and a laptop) replace its picture at the same
    time, through two workers: every replaced file is removed, only the current one stays."""
    migrate(empty_database_url)
    media = tmp_path / "media"
    ledger = Ledger()
    stop = threading.Event()
    with ServerGroup(empty_database_url, media, workers=2) as server:
        token = register(server.base_url, "twice")
        uploaders = [
            PictureUploader("twice", server.base_url, token, ledger, stop, tag=f"-{n}")
            for n in range(4)
        ]
        run_threads(uploaders, stop, 3)
    current = stored_pictures(empty_database_url)["twice"]
    files = sorted(path.name for path in (media / "profile_pics").iterdir())
    print(
        f"\npictures [{backend}]: {len(ledger.pictures['twice'])} concurrent uploads "
        f"acknowledged, {len(files)} files left for 1 picture; {ledger.statuses_text()}"
    )
    assert not ledger.problems, ledger.problems[:10]
    assert current in ledger.pictures["twice"]
    assert files == [current], f"{len(files) - 1} files orphaned: {files[:5]}..."


# ---------------------------------------------------------------- 3. several workers


def post_form(
    server: ServerGroup, path: str, cookies: dict[str, str], **data: str
) -> httpx.Response:
    """POST a form to one given worker."""
    with fresh_client(server.base_url, cookies) as client:
        return client.post(path, data=data, follow_redirects=False)


def get_page(server: ServerGroup, path: str, cookies: dict[str, str]) -> httpx.Response:
    with fresh_client(server.base_url, cookies) as client:
        return client.get(path, follow_redirects=False)


@pytest.mark.server
def test_workers_share_sessions_csrf_and_throttling(empty_database_url, tmp_path):
    """Two workers behave like two machines behind a load balancer: what one issues (CSRF
    tokens, sessions) the other accepts, and failed logins are counted across both.

    Each worker listens on a port of its own, so every request goes to the worker the test
    names, and the clock (read by both from one file) stands still until the test moves it:
    nothing here depends on the kernel's choice of worker or on the machine's speed.
    """
    migrate(empty_database_url)
    clock = ClockFile(tmp_path / "clock")
    with separate_workers(empty_database_url, tmp_path / "media", 2, clock.path) as workers:
        first, second = workers
        register(first.base_url, "roaming")

        # A CSRF token (and its cookie) from one worker, the login form posted to the other.
        form = get_page(first, "/login", {})
        anonymous = dict(form.cookies)
        token = csrf_from(form.text)
        login = post_form(
            second, "/login", anonymous, username="roaming", password=PASSWORD, csrf_token=token
        )
        assert login.status_code == 303, login.text
        session = dict(login.cookies)

        # The session works on either worker.
        for worker in workers:
            account = get_page(worker, "/account", session)
            assert account.status_code == 200, account.text
            assert "roaming" in account.text

        # The session's CSRF token from one worker logs out on the other; then the session
        # is gone for both.
        account = get_page(first, "/account", session)
        logout = post_form(second, "/logout", session, csrf_token=csrf_from(account.text))
        assert logout.status_code == 303, logout.text
        for worker in workers:
            assert get_page(worker, "/account", session).status_code == 303

        # Failed logins alternate between the workers at one instant: five are let through
        # (three on one, two on the other); the sixth and seventh are refused on either.
        wrong = {"username": "roaming", "password": "not the password", "csrf_token": token}
        statuses = [
            post_form(workers[attempt % 2], "/login", anonymous, **wrong).status_code
            for attempt in range(7)
        ]
        assert statuses == [400] * 5 + [429, 429]

        # Once the window has passed on the shared clock, either worker lets the owner in.
        clock.advance(minutes=16)
        right = {**wrong, "password": PASSWORD}
        assert post_form(second, "/login", anonymous, **right).status_code == 303


def test_write_transactions_queue_on_a_lock_file_every_process_shares(tmp_path):
    """Writers of other processes wait in the kernel on one lock file (woken the moment a
    write ends) rather than in SQLite's busy handler, which sleeps in steps of 100 ms."""
    path = tmp_path / "queued.db"
    engine = make_engine(f"sqlite:///{path}")
    writer = engine.execution_options(**{IMMEDIATE: True})
    other_process = os.open(f"{path}-writelock", os.O_RDWR | os.O_CREAT)
    try:
        with writer.connect() as connection:
            connection.execute(text("CREATE TABLE t (n INTEGER)"))
            with pytest.raises(BlockingIOError):
                fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)
            connection.commit()
        # Free again once the write committed: the next writer goes straight in.
        fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other_process, fcntl.LOCK_UN)
    finally:
        os.close(other_process)
        engine.dispose()
