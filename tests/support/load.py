"""Helpers for tests/test_reliability.py.

`Ledger` records every request and response of a load run, thread-safely, and knows which
state of each post the server acknowledged.
"""

import random
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.accounts import PASSWORD
from tests.support.images import varied_png

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
CLIENT_TIMEOUT_S = 30
RETRY_PAUSE_S = 0.2
# httpx's words when a connection closed before any byte of the answer.
CLOSED_BEFORE_ANSWER = "Server disconnected without sending a response"


# ---------------------------------------------------------------- the server process group


def register(base_url: str, username: str, verify: ssl.SSLContext | bool = True) -> str:
    """Create an account over the API and return a bearer token for it."""
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_S, verify=verify) as client:
        account = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
        created = client.post("/api/users", json=account)
        assert created.status_code == 201, created.text
        token = client.post("/api/token", data={"username": username, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return token.json()["access_token"]


# ---------------------------------------------------------------- recording a load run


@dataclass
class PostRecord:
    """What the clients know about one post.

    `acked` is the last content the server acknowledged. `pending` holds contents sent after it
    whose outcome is unknown (the connection broke before an answer), any of which may be the
    stored one; the same goes for a delete whose answer never came.
    """

    title: str
    acked: str
    acked_writes: int = 1
    pending: list[str] = field(default_factory=list)
    deleted: bool = False
    delete_pending: bool = False


@dataclass(repr=False)
class Ledger:
    """Every response of a run and the acknowledged state of every post and picture."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    # 5xx, "database is locked", any status other than the expected one, thread failures.
    problems: list[str] = field(default_factory=list)
    posts: dict[int, PostRecord] = field(default_factory=dict)
    # Records whose id the server later gave to a new post (SQLite reuses the highest rowid
    # once that row is deleted, unless the table is declared AUTOINCREMENT).
    retired: list[tuple[int, PostRecord]] = field(default_factory=list)
    # Creations never answered: title -> content (the post may or may not exist).
    unanswered_creates: dict[str, str] = field(default_factory=dict)
    # Per user: every picture name an upload returned, and whether one is unanswered since.
    pictures: dict[str, list[str]] = field(default_factory=dict)
    picture_pending: dict[str, bool] = field(default_factory=dict)
    requests: int = 0
    # Requests sent and not yet answered (or failed), right now.
    in_flight: int = 0
    # Seconds from sending to the whole answer, for every answered request.
    latencies: list[float] = field(default_factory=list)
    # Resend, as browsers do, a request whose kept-alive connection the server closed just
    # as it was sent (no byte of an answer came): the request never reached the app. Off
    # where a closed connection means a crash, which may have applied the request.
    resend_on_closed_connection: bool = False
    resent: int = 0
    # 503 with Retry-After: the server refused the request before doing anything (a write
    # queue full, a deadlock PostgreSQL ended by rolling this one back); the client waits.
    busy: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def send(
        self,
        client: httpx.Client,
        expected: int | tuple[int, ...],
        method: str,
        url: str,
        **kwargs: object,
    ) -> httpx.Response | None:
        """Send one request and record its outcome; None if no answer came (or not the one
        expected)."""
        accepted = (expected,) if isinstance(expected, int) else expected
        with self.lock:
            self.requests += 1
            self.in_flight += 1
        started = time.monotonic()
        try:
            response = self._request(client, method, url, **kwargs)
        except httpx.TransportError as exc:
            with self.lock:
                self.in_flight -= 1
                self.transport_errors[type(exc).__name__] += 1
            return None
        body = response.text
        with self.lock:
            self.in_flight -= 1
            self.latencies.append(time.monotonic() - started)
            self.statuses[response.status_code] += 1
            if response.status_code == 503 and "retry-after" in response.headers:
                self.busy += 1
                return None
            if response.status_code not in accepted or "database is locked" in body.lower():
                self.problems.append(f"{method} {url} -> {response.status_code}: {body[:500]}")
        return response if response.status_code in accepted else None

    def _request(
        self, client: httpx.Client, method: str, url: str, **kwargs: object
    ) -> httpx.Response:
        try:
            return client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.RemoteProtocolError as exc:
            if not (self.resend_on_closed_connection and CLOSED_BEFORE_ANSWER in str(exc)):
                raise
            with self.lock:
                self.resent += 1
            return client.request(method, url, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Ledger({self.requests} requests, {self.statuses_text()})"

    @property
    def server_errors(self) -> int:
        with self.lock:
            return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def errors(self) -> int:
        """Requests that got a 5xx or no answer at all."""
        with self.lock:
            return self.server_errors + sum(self.transport_errors.values())

    @property
    def acknowledged_writes(self) -> int:
        with self.lock:
            records = [*self.posts.values(), *(record for _, record in self.retired)]
            posts = sum(record.acked_writes for record in records)
            return posts + sum(len(names) for names in self.pictures.values())

    def deleted_posts(self) -> list[tuple[int, PostRecord]]:
        """Every post whose deletion was acknowledged, including those whose id was reused."""
        with self.lock:
            current = [(post_id, record) for post_id, record in self.posts.items()]
            return [(i, record) for i, record in [*current, *self.retired] if record.deleted]

    def statuses_text(self) -> str:
        with self.lock:
            statuses = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
            latencies = sorted(self.latencies)
        text = f"statuses {{{statuses}}}, transport errors {dict(self.transport_errors)}"
        if latencies:
            p50, p99 = (latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.99))
            text += f", latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
            text += f", max {latencies[-1] * 1000:.0f} ms"
        return text


class ClientThread(threading.Thread):
    """A client that keeps taking steps until told to stop; a step returns False when the
    server did not answer, and the thread then pauses instead of spinning while it restarts.
    Subclasses set base_url, headers, stop and ledger, and define step()."""

    base_url: str
    headers: dict[str, str]
    stop: threading.Event
    ledger: "Ledger"
    # A TLS context trusting the server's certificate, where it has one of its own.
    verify: ssl.SSLContext | bool = True

    def step(self, client: httpx.Client) -> bool:
        raise NotImplementedError

    def run(self) -> None:
        try:
            with httpx.Client(
                base_url=self.base_url,
                headers=self.headers,
                timeout=CLIENT_TIMEOUT_S,
                verify=self.verify,
            ) as client:
                while not self.stop.is_set():
                    if not self.step(client):
                        self.stop.wait(RETRY_PAUSE_S)
        except Exception as exc:  # reported by the test, not lost in the thread
            with self.ledger.lock:
                self.ledger.problems.append(f"{self.name} failed: {exc!r}")


class PostWriter(ClientThread):
    """One client: creates posts, edits and deletes its own, until `stop` is set.

    Each post is touched by one thread only, sequentially, so "the last acknowledged content"
    is well defined.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str,
        ledger: Ledger,
        stop: threading.Event,
        *,
        create_only: bool = False,
        verify: ssl.SSLContext | bool = True,
        deletes_may_be_resent: bool = False,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.base_url = base_url
        self.verify = verify
        self.deletes_may_be_resent = deletes_may_be_resent
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ledger = ledger
        self.stop = stop
        self.create_only = create_only
        self.rng = random.Random(name)
        self.mine: list[int] = []
        self.count = 0

    def step(self, client: httpx.Client) -> bool:
        self.count += 1
        roll = self.rng.random()
        if self.create_only or not self.mine or roll < 0.45:
            return self.create(client)
        post_id = self.rng.choice(self.mine)
        if roll < 0.85:
            return self.edit(client, post_id)
        return self.delete(client, post_id)

    def _content(self) -> str:
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(5, 40)))
        return f"{self.name} revision {self.count}: {words}."

    def create(self, client: httpx.Client) -> bool:
        title = f"{self.name} post {self.count}"
        content = self._content()
        with self.ledger.lock:
            self.ledger.unanswered_creates[title] = content
        body = {"title": title, "content": content}
        response = self.ledger.send(client, 201, "POST", "/api/posts", json=body)
        if response is None:
            return False
        post_id = response.json()["id"]
        with self.ledger.lock:
            del self.ledger.unanswered_creates[title]
            previous = self.ledger.posts.get(post_id)
            if previous is not None:
                self.ledger.retired.append((post_id, previous))
            self.ledger.posts[post_id] = PostRecord(title=title, acked=content)
        self.mine.append(post_id)
        return True

    def edit(self, client: httpx.Client, post_id: int) -> bool:
        content = self._content()
        record = self.ledger.posts[post_id]
        with self.ledger.lock:
            record.pending.append(content)
        response = self.ledger.send(
            client, 200, "PATCH", f"/api/posts/{post_id}", json={"content": content}
        )
        if response is None:
            return False
        with self.ledger.lock:
            record.acked = content
            record.pending.clear()
            record.acked_writes += 1
        return True

    def delete(self, client: httpx.Client, post_id: int) -> bool:
        record = self.ledger.posts[post_id]
        self.mine.remove(post_id)  # never touched again, whatever the outcome
        with self.ledger.lock:
            record.delete_pending = True
        # Behind a balancer a DELETE cut off on a crashed host is sent again to another (it
        # is idempotent): 404 then says the first attempt took effect, which the database
        # check confirms.
        expected = (204, 404) if self.deletes_may_be_resent else (204,)
        response = self.ledger.send(client, expected, "DELETE", f"/api/posts/{post_id}")
        if response is None:
            return False
        with self.ledger.lock:
            record.deleted = True
            record.acked_writes += 1
        return True


class PageReader(ClientThread):
    """One reader: the home page, the API's list and the posts the writers acknowledged."""

    def __init__(
        self,
        name: str,
        base_url: str,
        ledger: Ledger,
        stop: threading.Event,
        *,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.base_url = base_url
        self.headers = {}
        self.ledger = ledger
        self.stop = stop
        self.verify = verify
        self.rng = random.Random(name)

    def step(self, client: httpx.Client) -> bool:
        with self.ledger.lock:
            known = [i for i, record in self.ledger.posts.items() if not record.delete_pending]
        roll = self.rng.random()
        if known and roll < 0.5:
            # A post may be deleted by its writer meanwhile: 404 is a fair answer then.
            path = f"/api/posts/{self.rng.choice(known)}"
            expected = (200, 404)
        else:
            path, expected = ("/" if roll < 0.75 else "/api/posts"), (200,)
        response = self.ledger.send(client, expected, "GET", path)
        return response is not None


class PictureUploader(ClientThread):
    """One client per user: replaces the user's profile picture again and again."""

    def __init__(
        self,
        username: str,
        base_url: str,
        token: str,
        ledger: Ledger,
        stop: threading.Event,
        *,
        tag: str = "",
    ) -> None:
        super().__init__(name=f"pictures-{username}{tag}", daemon=True)
        self.username = username
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ledger = ledger
        self.stop = stop
        self.count = 0
        ledger.pictures.setdefault(username, [])
        ledger.picture_pending.setdefault(username, False)

    def step(self, client: httpx.Client) -> bool:
        return self.upload(client)

    def upload(self, client: httpx.Client) -> bool:
        self.count += 1
        picture = varied_png(f"{self.name}-{self.count}")
        with self.ledger.lock:
            self.ledger.picture_pending[self.username] = True
        files = {"picture": ("me.png", picture, "image/png")}
        response = self.ledger.send(client, 200, "PUT", "/api/users/me/picture", files=files)
        if response is None:
            return False
        name = response.json()["image_path"].rsplit("/", 1)[1]
        with self.ledger.lock:
            self.ledger.pictures[self.username].append(name)
            self.ledger.picture_pending[self.username] = False
        return True


def check_posts(ledger: Ledger, stored: dict[int, tuple[str, str]]) -> tuple[int, list[str]]:
    """Compare the database (id -> (title, content)) with what the server acknowledged.

    Returns the number of acknowledged writes whose effect was found and every discrepancy.
    A post's acknowledged writes count as found when its stored state is the last one
    acknowledged (or, after a crash, one sent later whose answer was lost).
    """
    problems: list[str] = []
    found = 0
    for post_id, record in ledger.retired:
        # The id now names a newer post, so this one is certainly gone from it.
        if record.deleted or record.delete_pending:
            found += record.acked_writes
        else:
            problems.append(f"post {post_id} ({record.title!r}) was live when its id was reused")
    for post_id, record in ledger.posts.items():
        row = stored.get(post_id)
        # A different title under the same id is another post: SQLite reuses ids.
        present = row is not None and row[0] == record.title
        if record.deleted:
            if present:
                problems.append(f"post {post_id} was deleted (204) but is still stored")
            else:
                found += record.acked_writes
        elif not present:
            if record.delete_pending:
                found += record.acked_writes
            else:
                problems.append(f"post {post_id} ({record.title!r}) was acknowledged but is lost")
        elif row[1] in (record.acked, *record.pending):
            found += record.acked_writes
        else:
            problems.append(
                f"post {post_id} holds {row[1][:60]!r}, last acknowledged {record.acked[:60]!r}"
            )
    for post_id, (title, content) in stored.items():
        record = ledger.posts.get(post_id)
        if record is not None and record.title == title:
            continue
        # Only a creation whose answer was lost may have left a post nobody knows the id of.
        if ledger.unanswered_creates.get(title) != content:
            problems.append(f"post {post_id} ({title!r}) was never acknowledged nor sent")
    return found, problems


WORDS = (
    *("ink", "quill", "paper", "margin", "draft", "chapter", "verse", "prose", "essay"),
    *("index", "folio", "serif", "kerning", "ligature", "ampersand", "colophon", "footnote"),
    *("preface", "epilogue", "glossary"),
)
