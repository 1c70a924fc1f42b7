"""The benchmark's own database access, for SQLite and PostgreSQL alike: the floor, the
datasets' housekeeping and the path samples read the dataset through `connect`, with `?`
placeholders and times passed through `moment`, whichever database the URL names."""

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql+psycopg://", "postgresql://")


def is_sqlite(url: str) -> bool:
    return url.startswith(SQLITE_PREFIX)


def sqlite_path(url: str) -> str:
    """The file of `sqlite:///relative` or `sqlite:////absolute`."""
    return url[len(SQLITE_PREFIX) :]


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as psycopg takes it (without the driver name)."""
    for prefix in POSTGRES_PREFIXES:
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    raise RuntimeError(f"neither SQLite nor PostgreSQL: {url!r}")


class Connection:
    """One autocommit connection: each statement is its own transaction, as the floor's
    reads and the housekeeping's single deletes need."""

    def __init__(self, url: str) -> None:
        self.sqlite = is_sqlite(url)
        if self.sqlite:
            self._raw: Any = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
            self._raw.execute("PRAGMA busy_timeout=5000")
            # SQLite enforces foreign keys (and so the cascades) per connection.
            self._raw.execute("PRAGMA foreign_keys=ON")
        else:
            import psycopg  # only a PostgreSQL run needs it

            self._raw = psycopg.connect(libpq_url(url), autocommit=True)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        """Run `sql` written with `?` placeholders; the cursor (fetchone, fetchall, rowcount)."""
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        return self._raw.execute(sql, parameters)

    def moment(self, value: datetime) -> Any:
        """A UTC time as the dataset's columns compare with it: SQLite keeps naive UTC text
        (what Inkwell's UTCDateTime stores), PostgreSQL a timestamptz."""
        if self.sqlite:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
        return value

    def close(self) -> None:
        self._raw.close()


def read_moment(value: str | datetime) -> datetime:
    """A time column's value back as an aware UTC datetime (SQLite gives text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    connection = Connection(url)
    try:
        yield connection
    finally:
        connection.close()
