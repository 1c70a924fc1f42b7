"""`inkwell backup` (make backup): a consistent online copy, taken while the server is writing,
restores with every row acknowledged before it began (the SQLite backup API; pg_dump for
PostgreSQL)."""

import itertools
import os
import sqlite3
import subprocess
import threading
import time
from contextlib import ExitStack, closing
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.backup import libpq_url, pg_tool
from tests.support.commands import inkwell
from tests.support.load import ROOT, Ledger, PostWriter, register
from tests.support.server import migrate
from tests.support.server_group import ServerGroup
from tests.test_reliability import integrity_check, join_all, sqlite_path, stored_posts

_names = itertools.count(1)


@pytest.mark.server
def test_online_backup_while_writing(empty_database_url, backend, tmp_path, request):
    """`inkwell backup` copies the database while clients keep posting; the copy restores
    and holds every post acknowledged before it began, each with its author."""
    migrate(empty_database_url)
    # Some fifteen hundred posts, so that the copy takes long enough for writes to overlap it.
    subprocess.run(
        inkwell("seed", "--users", "5", "--posts", "1500"),
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": empty_database_url},
        check=True,
        capture_output=True,
    )
    seeded = stored_posts(empty_database_url)
    output = tmp_path / "backups" / ("copy.db" if backend == "sqlite" else "copy.dump")
    ledger = Ledger()
    stop = threading.Event()
    with (
        ServerGroup(empty_database_url, tmp_path / "media", workers=2) as server,
        ExitStack() as cleanup,
    ):
        tokens = [register(server.base_url, f"backer{n}") for n in range(2)]
        if backend == "sqlite":
            # A long read (a slow report, say) holds checkpoints back, so the newest rows live
            # only in the write-ahead log: a copy of the database file alone would miss them.
            reader = cleanup.enter_context(
                closing(sqlite3.connect(sqlite_path(empty_database_url), isolation_level=None))
            )
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM posts").fetchone()
        writers = [
            PostWriter(f"backup-writer{n}", server.base_url, token, ledger, stop, create_only=True)
            for n, token in enumerate(tokens * 2)
        ]
        for writer in writers:
            writer.start()
        try:
            deadline = time.monotonic() + 30
            while ledger.acknowledged_writes < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            with ledger.lock:
                before = {post_id: post.title for post_id, post in ledger.posts.items()}
            started = time.monotonic()
            result = subprocess.run(
                inkwell("backup", "--output", str(output)),
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": empty_database_url},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            took = time.monotonic() - started
            during = ledger.acknowledged_writes - len(before)
            # The server keeps taking writes after the backup, too.
            target = ledger.acknowledged_writes + 5
            while ledger.acknowledged_writes < target and time.monotonic() < deadline + 30:
                time.sleep(0.02)
        finally:
            stop.set()
            join_all(writers)
    assert result.returncode == 0, result.stderr
    assert "Backup written to" in result.stdout
    assert not list(output.parent.glob("*.partial"))

    restored_url = restore(backend, output, request)
    copy = stored_posts(restored_url)
    engine = create_engine(restored_url)
    try:
        with engine.connect() as connection:
            orphans = connection.execute(
                text("SELECT count(*) FROM posts WHERE user_id NOT IN (SELECT id FROM users)")
            ).scalar_one()
    finally:
        engine.dispose()
    expected = {**{i: title for i, (title, _) in seeded.items()}, **before}
    missing = {i: title for i, title in expected.items() if copy.get(i, ("",))[0] != title}
    acknowledged = set(seeded) | set(ledger.posts)
    unknown = [i for i in copy if i not in acknowledged]
    print(
        f"\nbackup [{backend}]: {len(expected)} posts acknowledged before the backup "
        f"({len(before)} over HTTP), {len(expected) - len(missing)} found in the restored copy "
        f"({len(copy)} posts); {during} writes acknowledged during the {took:.2f} s backup, "
        f"{ledger.acknowledged_writes} in all, {ledger.errors} errors"
    )
    assert not ledger.problems, ledger.problems[:10]
    assert missing == {}
    assert unknown == []
    assert orphans == 0
    assert len(before) >= 20


def restore(backend: str, output: Path, request: pytest.FixtureRequest) -> str:
    """Open or restore the backup; return a URL to the restored database."""
    if backend == "sqlite":
        assert integrity_check(output) == ["ok"]
        connection = sqlite3.connect(output)
        try:
            assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
            # A single self-contained file: nothing was left in a write-ahead log.
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        finally:
            connection.close()
        return f"sqlite:///{output}"
    cluster = request.getfixturevalue("postgres")
    url = cluster.create_database(f"inkwell_restored_{next(_names)}")
    dsn, env = libpq_url(make_url(url))
    subprocess.run(
        [pg_tool("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={dsn}", str(output)],
        env=env,
        check=True,
        capture_output=True,
    )
    return url
