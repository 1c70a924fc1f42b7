"""A throwaway PostgreSQL server for `python -m bench --postgres`: the test suite's own
(tests/support/pg.py: initdb and pg_ctl in a temporary directory, stopped and removed
afterwards), which needs nothing of pytest.

Like the test suite's, the server runs without fsync (it lives for one run), so a commit
costs less than on a durable server: read its write figures as the database's work, not
a disk's."""

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.pg import PostgresCluster


@contextmanager
def server() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
