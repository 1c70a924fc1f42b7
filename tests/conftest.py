"""Fixtures: every database test runs against SQLite and a real PostgreSQL server."""

import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from config import Settings, use_clock
from database import IMMEDIATE, Base, Database
from main import create_app
from models import Post, User
from services.mail import deliver_due
from services.passwords import hash_password
from services.posts import rendered_fields
from services.sessions import create_session
from services.text import slugify
from tests.support.accounts import PASSWORD
from tests.support.clock import MovableClock
from tests.support.pg import PostgresCluster
from tests.support.smtp import MailCatcher, smtp_settings
from web.cookies import SESSION_COOKIE

BACKENDS = ["sqlite", "postgresql"]
ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One cluster per test process (each xdist worker has its own)."""
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def migrate_to_head(url: str) -> None:
    """Build the schema the way production does: with the migrations."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def postgres_schema_url(postgres: PostgresCluster) -> str:
    """A migrated database, shared by the tests of one process (emptied after each)."""
    url = postgres.create_database("inkwell_test")
    migrate_to_head(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy, which is far quicker than migrating."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def clock() -> Iterator[MovableClock]:
    """This process's time, standing still until the test moves it."""
    moving = MovableClock()
    previous = use_clock(moving)
    try:
        yield moving
    finally:
        use_clock(previous)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to a database with no tables at all."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database(f"inkwell_empty_{next(_names)}")


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a database with the schema and no rows."""
    if backend == "sqlite":
        target = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    url = request.getfixturevalue("postgres_schema_url")
    yield url
    database = Database(url)
    with database.engine.begin() as connection:
        # Triggers and generated columns keep the search index empty along with the rows.
        # site_state keeps its single row: the triggers that bump it need it there.
        tables = ", ".join(
            table.name for table in Base.metadata.sorted_tables if table.name != "site_state"
        )
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    database.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The app's settings; `parametrize("settings", ["local", "database"], indirect=True)`
    runs a test with each media storage. No mail thread: tests deliver the outbox
    themselves (services.mail.deliver_due)."""
    storage = getattr(request, "param", "local")
    return Settings(
        database_url=database_url,
        media_dir=tmp_path / "media",
        debug=True,
        media_storage=storage,
        outbox_dir=tmp_path / "outbox",
        mail_poll_seconds=0,
        # Test accounts are all new: tests/test_new_accounts.py sets the posting limit.
        new_account_period_hours=0,
    )


@pytest.fixture
def smtp_server() -> Iterator[MailCatcher]:
    """A real SMTP server (aiosmtpd) on a loopback port, keeping what it receives."""
    catcher = MailCatcher().start()
    try:
        yield catcher
    finally:
        catcher.stop()


@pytest.fixture
def send(app: FastAPI, settings: Settings, smtp_server: MailCatcher) -> Callable[[], list]:
    """Deliver the outbox to the test SMTP server; return what arrived since last time."""
    seen = 0

    def deliver() -> list:
        nonlocal seen
        deliver_due(app.state.database, smtp_settings(settings, smtp_server))
        fresh = smtp_server.messages[seen:]
        seen = len(smtp_server.messages)
        return fresh

    return deliver


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.database.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    """A session on the app's database, for arranging and checking rows.

    A reader (deferred BEGIN): a writer's BEGIN IMMEDIATE would hold SQLite's write lock
    between the test's statements and block the app under test.
    """
    session = app.state.database.session(write=False)
    yield session
    session.close()


def commit_as_writer(db: Session, *rows: object) -> None:
    """Add `rows` and commit them in a transaction that queues for the write lock as the
    app's writers do, so that a writer of the app (a mail thread, say) running at the same
    moment makes this wait its turn rather than fail with "database is locked". (Within
    a read the test left open, the write goes on in that transaction.)"""
    if not db.in_transaction():
        db.connection(execution_options={IMMEDIATE: True})
    db.add_all(rows)
    db.commit()


@pytest.fixture
def make_user(db: Session) -> Callable[..., User]:
    def factory(username: str | None = None, **fields: object) -> User:
        name = username or f"user{next(_names)}"
        user = User(username=name, email=fields.pop("email", f"{name}@example.com"), **fields)
        commit_as_writer(db, user)
        return user

    return factory


@pytest.fixture
def make_post(db: Session, make_user: Callable[..., User]) -> Callable[..., Post]:
    def factory(author: User | None = None, **fields: object) -> Post:
        number = next(_names)
        content = fields.pop("content", f"Body of post {number}.")
        title = fields.pop("title", f"Post number {number}")
        post = Post(
            author=author or make_user(),
            title=title,
            slug=fields.pop("slug", slugify(title) or "post"),
            content=content,
            **(rendered_fields(content) | fields),
        )
        commit_as_writer(db, post)
        return post

    return factory


class StatementCounter:
    """Counts SQL statements an engine executes while active."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        self.saw(statement)

    def saw(self, statement: str) -> None:
        # BEGIN/COMMIT bookkeeping is not a query.
        if statement.split(None, 1)[0].upper() not in {"BEGIN", "COMMIT", "ROLLBACK"}:
            self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_statements(app: FastAPI) -> Iterator[Callable[[], StatementCounter]]:
    """`with count_statements() as counter:`-style helper, returned as a factory."""
    engine = app.state.database.engine
    # The engine's events, and the reads run past them (database.OneRowRead).
    observers = app.state.database.statement_observers
    counters: list[StatementCounter] = []

    def start() -> StatementCounter:
        counter = StatementCounter()
        event.listen(engine, "before_cursor_execute", counter)
        observers.append(counter.saw)
        counters.append(counter)
        return counter

    yield start
    for counter in counters:
        event.remove(engine, "before_cursor_execute", counter)
        observers.remove(counter.saw)


@pytest.fixture
def make_account(make_user: Callable[..., User]) -> Callable[..., User]:
    """A user who can log in (hashing a password is slow, so plain make_user does not)."""

    def factory(username: str | None = None, password: str = PASSWORD, **fields: object) -> User:
        return make_user(username, password_hash=hash_password(password), **fields)

    return factory


@pytest.fixture
def browser_session(db: Session) -> Callable[[TestClient, User], str]:
    """Give `client` a server-side session for `user` without going through the form."""

    def attach(client: TestClient, user: User) -> str:
        token = create_session(db, user=user, kind="browser")
        client.cookies.set(SESSION_COOKIE, token)
        return token

    return attach


@pytest.fixture
def api_headers(db: Session) -> Callable[[User], dict[str, str]]:
    def headers(user: User) -> dict[str, str]:
        return {"Authorization": f"Bearer {create_session(db, user=user, kind='api')}"}

    return headers
