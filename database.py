"""Engine, session factory and the request-scoped session dependency."""

import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy import Engine, MetaData, Select, create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Requests with these methods only read, so they may use SQLite's deferred BEGIN.
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SQLITE_BUSY_TIMEOUT_MS = 5000
# Each pooled connection keeps a private page cache (2 MB by default), and a busy worker
# holds dozens of connections, so the default would multiply into most of a worker's memory
# (a burst of searches for a common word filled ~90 MB). A small cache keeps the hot b-tree
# pages per connection; every other page is one read away in the kernel's shared file cache.
SQLITE_CACHE_KIB = 256
IMMEDIATE = "sqlite_begin_immediate"
# How long a write waits for the other writers of its own process before the request is
# answered 503: far longer than any write takes, far shorter than a client's patience.
WRITE_QUEUE_TIMEOUT_S = 10.0


ResultT = TypeVar("ResultT")


class DatabaseBusyError(Exception):
    """The database is saturated: the write could not start in time. Worth a retry."""


# Named constraints, so migrations can refer to (and drop) them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SerialisedWrites(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on a lock of their process, and
    then on a lock file shared by every process of the database.

    SQLite lets one writer in at a time. Writers that find it taken sleep in the busy
    handler and poll, in steps of up to 100 ms, so under load they wait far longer than the
    write takes and the unlucky ones time out. Queued on a lock instead, each thread starts
    as soon as the one before commits. Between processes the same queue is an exclusive
    `flock` on a file beside the database: the kernel wakes the next writer the moment the
    last one lets go, where the busy handler would sleep through most of the gap (a p99 of
    over a second for `POST /api/posts` with two workers). The locks are taken just before
    BEGIN IMMEDIATE and released after COMMIT or ROLLBACK (the pool rolls back every
    connection it gets back, so none keeps them).
    """

    write_lock: threading.Lock  # one per engine, set on the subclass made for it
    lock_path: str | None = None  # the file every process's writers queue on
    holds_write_lock = False
    # This process's descriptor for lock_path (a forked child opens its own: a descriptor
    # inherited across fork would share the parent's lock).
    _lock_file: tuple[int, int] | None = None  # (pid, fd)

    def begin_write(self) -> None:
        if not self.write_lock.acquire(timeout=WRITE_QUEUE_TIMEOUT_S):
            raise DatabaseBusyError("Too many writes are waiting for the database")
        self.holds_write_lock = True
        try:
            descriptor = self._lock_descriptor()
            if descriptor is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
        except BaseException:
            self._release_write_lock()
            raise

    def _lock_descriptor(self) -> int | None:
        cls = type(self)
        if cls.lock_path is None:
            return None
        if cls._lock_file is None or cls._lock_file[0] != os.getpid():
            descriptor = os.open(cls.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            cls._lock_file = (os.getpid(), descriptor)
        return cls._lock_file[1]

    def _release_write_lock(self) -> None:
        if self.holds_write_lock:
            self.holds_write_lock = False
            try:
                if self._lock_file is not None and self._lock_file[0] == os.getpid():
                    fcntl.flock(self._lock_file[1], fcntl.LOCK_UN)
            finally:
                self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release_write_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release_write_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release_write_lock()


def _connection_class(url: str) -> type[SerialisedWrites]:
    """A SerialisedWrites subclass with locks of its own, for one engine's connections."""
    database = make_url(url).database
    on_disk = bool(database) and database != ":memory:" and not database.startswith("file:")
    attributes = {
        "write_lock": threading.Lock(),
        "lock_path": f"{os.path.abspath(database)}-writelock" if on_disk else None,
    }
    return type("EngineConnection", (SerialisedWrites,), attributes)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 driver so SQLAlchemy emits it (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with
        # "database is locked" when another writer got there first, whatever busy_timeout
        # says; IMMEDIATE takes the write lock up front and so waits politely instead.
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        if not immediate:
            connection.exec_driver_sql("BEGIN")
            return
        dbapi_connection = connection.connection.dbapi_connection
        dbapi_connection.begin_write()  # type: ignore[union-attr]
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except Exception:
            dbapi_connection._release_write_lock()  # type: ignore[union-attr]
            raise


# A request holds its connection from its first query to its end, across thread hand-offs,
# so under load as many connections are busy as requests are in flight. Keeping that many
# open avoids opening (and configuring) a fresh SQLite connection for every request; the
# overflow only bounds the worst case, and is generous so that nothing waits on the pool.
SQLITE_POOL = {"pool_size": 32, "max_overflow": 64}
POSTGRES_POOL = {"pool_size": 10, "max_overflow": 40}


def make_engine(url: str) -> Engine:
    """Create an engine for `url`, with SQLite tuned for a multi-process web server."""
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "factory": _connection_class(url)}
        engine = create_engine(url, connect_args=connect_args, **SQLITE_POOL)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **POSTGRES_POOL)


StatementObserver = Callable[[str], None]


class OneRowRead:
    """A read of one row, compiled once for an engine and run straight on a pooled DBAPI
    connection, past SQLAlchemy's execution machinery.

    For the statements read on nearly every request (the page cache's stamps): on SQLite
    the machinery (a Connection, an execution context, a result) costs several times the
    query itself, some 75 µs against 15 µs. The values still pass through the columns' own
    type processors, so a row reads as Connection.execute would give it. Observers (the
    tests' and the benchmark's statement counters) are told of each statement run.
    """

    def __init__(self, database: "Database", statement: Select[Any]) -> None:
        dialect = database.engine.dialect
        compiled = statement.compile(dialect=dialect)
        self._engine = database.engine
        self._dbapi_error = dialect.loaded_dbapi.Error
        self._observers = database.statement_observers
        self._compiled = compiled
        self._positions = compiled.positiontup
        # Each type as this dialect implements it (SQLite keeps moments as text, say).
        self._binds = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self._columns = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]

    def __call__(self, **values: object) -> tuple[Any, ...] | None:
        """The row the statement reads with `values` bound, or None when there is none;
        DBAPIError when the database cannot answer."""
        parameters = self._parameters(values)
        sql = self._compiled.string
        for observe in self._observers:
            observe(sql)
        try:
            connection = self._engine.raw_connection()
        except self._dbapi_error as error:
            # The pool lets a failed connect through as the driver raised it.
            raise DBAPIError.instance(None, None, error, self._dbapi_error) from error
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, parameters)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except self._dbapi_error as error:
            raise DBAPIError.instance(sql, parameters, error, self._dbapi_error) from error
        finally:
            connection.close()
        if row is None:
            return None
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self._columns, row, strict=True)
        )

    def _parameters(self, values: dict[str, object]) -> Any:
        processed = {}
        for name, value in self._compiled.construct_params(values).items():
            process = self._binds[name]
            processed[name] = value if process is None else process(value)
        # A driver of the "?" style takes them in order, one of the named style by name.
        return processed if self._positions is None else [processed[n] for n in self._positions]


class Database:
    """One engine plus a writer view of it whose transactions start with BEGIN IMMEDIATE."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.write_engine = self.engine.execution_options(**{IMMEDIATE: True})
        self._reader = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._writer = sessionmaker(bind=self.write_engine, expire_on_commit=False)
        # SQLite reads a page of a local file: quicker inline than a hand-off to a thread.
        # A PostgreSQL round trip waits on the network, which would stall the event loop.
        self.calls_inline = self.engine.dialect.name == "sqlite"
        # Told of each statement a OneRowRead runs (the engine's own events do not see it).
        self.statement_observers: list[StatementObserver] = []

    def session(self, *, write: bool) -> Session:
        """A new session; `write=True` for requests that may change data."""
        return self._writer() if write else self._reader()

    def dispose(self) -> None:
        self.engine.dispose()

    async def run(self, function: Callable[[], ResultT]) -> ResultT:
        """Call a short blocking database function from async code: on the event loop for
        SQLite, in a worker thread for a database across the network."""
        if self.calls_inline:
            return function()
        return await anyio.to_thread.run_sync(function)


def reading(db: Session) -> None:
    """Let the session's next transaction be a plain read even in a write request.

    Call it before a lookup that comes first in a request that may write (who is logged in,
    the post being edited), then `db.commit()` to end that read: the write that follows opens
    its own BEGIN IMMEDIATE, so the write lock is held for the write alone. Ignored once the
    session has a transaction under way.
    """
    if not db.in_transaction():
        db.connection(execution_options={IMMEDIATE: False})


async def get_db(request: Request) -> AsyncIterator[Session]:
    """Yield one session per request; roll back whatever the route did not commit.

    An async dependency: making a session touches no database, and ending one is a local
    call on SQLite, so a sync route's whole request is one hand-off to the thread pool
    (FastAPI runs each sync dependency in a thread of its own, and a sync generator twice).
    """
    database: Database = request.app.state.database
    session = database.session(write=request.method not in READ_ONLY_METHODS)
    try:
        yield session
    except Exception:
        await database.run(session.rollback)
        raise
    finally:
        await database.run(session.close)


SessionDep = Annotated[Session, Depends(get_db)]
