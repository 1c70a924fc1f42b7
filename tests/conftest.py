"""Fixtures: every database test runs against SQLite and a real PostgreSQL server."""

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from config import Settings
from database import Base, Database
from main import create_app
from models import Post, User
from tests.pg import PostgresCluster

BACKENDS = ["sqlite", "postgresql"]
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


@pytest.fixture(scope="session")
def postgres_schema_url(postgres: PostgresCluster) -> str:
    """A database with the models' tables, shared by the tests of one process."""
    url = postgres.create_database("inkwell_test")
    database = Database(url)
    Base.metadata.create_all(database.engine)
    database.dispose()
    return url


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
        url = f"sqlite:///{tmp_path / 'test.db'}"
        database = Database(url)
        Base.metadata.create_all(database.engine)
        database.dispose()
        yield url
        return
    url = request.getfixturevalue("postgres_schema_url")
    yield url
    database = Database(url)
    with database.engine.begin() as connection:
        connection.execute(text("TRUNCATE posts, users RESTART IDENTITY CASCADE"))
    database.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, media_dir=tmp_path / "media", debug=True)


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
    """A session on the app's database, for arranging and checking rows."""
    session = app.state.database.session(write=True)
    yield session
    session.close()


@pytest.fixture
def make_user(db: Session) -> Callable[..., User]:
    def factory(username: str | None = None, **fields: object) -> User:
        name = username or f"user{next(_names)}"
        user = User(username=name, email=fields.pop("email", f"{name}@example.com"), **fields)
        db.add(user)
        db.commit()
        return user

    return factory


@pytest.fixture
def make_post(db: Session, make_user: Callable[..., User]) -> Callable[..., Post]:
    def factory(author: User | None = None, **fields: object) -> Post:
        number = next(_names)
        post = Post(
            author=author or make_user(),
            title=fields.pop("title", f"Post number {number}"),
            content=fields.pop("content", f"Body of post {number}."),
            **fields,
        )
        db.add(post)
        db.commit()
        return post

    return factory


class StatementCounter:
    """Counts SQL statements an engine executes while active."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: object, cursor: object, statement: str, *args: object) -> None:
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
    counters: list[StatementCounter] = []

    def start() -> StatementCounter:
        counter = StatementCounter()
        event.listen(engine, "before_cursor_execute", counter)
        counters.append(counter)
        return counter

    yield start
    for counter in counters:
        event.remove(engine, "before_cursor_execute", counter)
