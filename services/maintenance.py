"""Start-up work that the whole site needs done once, not once per process or host.

Every worker of every app host runs the start-up hook. Work on the shared database (posts
stored by an older Markdown renderer) is done by whichever process takes the maintenance
lock first; the others skip it and start serving at once. On PostgreSQL the lock is a
session-level advisory lock, held on a connection of its own while the work commits in
batches. SQLite has one writer at a time anyway, and its processes share one machine: each
takes its turn and finds nothing left to do.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

# Any constant works, as long as nothing else in the database uses it for its own lock.
MAINTENANCE_LOCK_KEY = 7_121_000_017


@contextmanager
def maintenance_turn(engine: Engine) -> Iterator[bool]:
    """True while this process holds the site's maintenance lock, False if another does."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as connection:
        taken = connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": MAINTENANCE_LOCK_KEY}
        )
        connection.commit()
        try:
            yield bool(taken)
        finally:
            if taken:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MAINTENANCE_LOCK_KEY}
                )
                connection.commit()
