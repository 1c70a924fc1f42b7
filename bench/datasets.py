"""Benchmark datasets: SQLite files built with the project's own `inkwell seed` command, cached
in bench/data/ and reused when present (brought up to the latest migration on every run); or,
for a PostgreSQL run, databases built the same way on a throwaway server (bench/postgres.py)
every time."""

import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench import db

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
MIGRATE_TIMEOUT_S = 1800
# Seeding renders Markdown per post: about 25 s per 100,000 posts, with a wide margin.
SEED_SECONDS_PER_POST = 0.002
SEED_MIN_TIMEOUT_S = 120
# Users the write benchmark creates (with their posts) are removed after every run.
WRITER_PREFIX = "bench_writer_"


@dataclass(frozen=True)
class Size:
    label: str
    users: int
    posts: int


SIZES = {
    "1k": Size("1k", users=100, posts=1_000),
    "100k": Size("100k", users=10_000, posts=100_000),
    "1m": Size("1m", users=10_000, posts=1_000_000),
}


@dataclass(frozen=True)
class Dataset:
    size: Size
    # SQLAlchemy's URL of the database: a SQLite file or a PostgreSQL database.
    url: str
    # An existing post (from the middle of the table) and its author, for the detail routes.
    post_id: int
    user_id: int
    # The post's slug: its page lives at /posts/{id}/{slug} (the short address redirects).
    post_slug: str = "post"

    @property
    def name(self) -> str:
        """The size, and the database when it is not SQLite: what files about it are named."""
        return self.size.label if db.is_sqlite(self.url) else f"{self.size.label}-postgres"


class Cluster(Protocol):
    """A database server that makes empty databases (tests/support/pg.py's does)."""

    def create_database(self, name: str) -> str: ...


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _sidecars(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def inkwell(*args: str) -> list[str]:
    """The project's command line (cli.py), run with this interpreter."""
    return [sys.executable, "-m", "cli", *args]


def migrate(url: str) -> None:
    """`inkwell migrate` on the database (a no-op when it is up to date)."""
    subprocess.run(
        inkwell("migrate", "--database-url", url),
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=MIGRATE_TIMEOUT_S,
    )


def _seed(url: str, size: Size) -> None:
    command = inkwell(
        "seed",
        "--users",
        str(size.users),
        "--posts",
        str(size.posts),
        "--database-url",
        url,
    )
    timeout = max(SEED_MIN_TIMEOUT_S, size.posts * SEED_SECONDS_PER_POST)
    # The seed command's progress bar goes to stderr, where the person running this sees it.
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=timeout)


def _checkpoint(path: Path) -> None:
    """Fold the write-ahead log into the file, so that the file alone is the dataset."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def build(size: Size, path: Path) -> None:
    """Build the dataset next to `path` and move it into place only once it is complete."""
    partial = path.with_name(path.name + ".partial")
    for leftover in _sidecars(partial):
        leftover.unlink(missing_ok=True)
    print(f"bench: building the {size.label} dataset ({size.posts:,} posts)", file=sys.stderr)
    migrate(sqlite_url(partial))
    _seed(sqlite_url(partial), size)
    _checkpoint(partial)
    for sidecar in _sidecars(partial)[1:]:
        sidecar.unlink(missing_ok=True)
    partial.rename(path)


def remove_bench_writers(url: str) -> int:
    """Delete the users the write benchmark created; their posts and tokens cascade."""
    with db.connect(url) as connection:
        deleted: int = connection.execute(
            "DELETE FROM users WHERE username LIKE ? ESCAPE '\\'",
            (WRITER_PREFIX.replace("_", "\\_") + "%",),
        ).rowcount
    return deleted


def _sample_ids(url: str) -> tuple[int, int, str]:
    with db.connect(url) as connection:
        (max_id,) = connection.execute("SELECT max(id) FROM posts").fetchone()
        row = connection.execute(
            "SELECT id, user_id, slug FROM posts WHERE id >= ? ORDER BY id LIMIT 1",
            ((max_id or 0) // 2,),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"{url} has no posts")
    return row[0], row[1], row[2]


def _ready(size: Size, url: str) -> Dataset:
    """The dataset at `url`, migrated and cleared of earlier benchmark writes."""
    migrate(url)
    remove_bench_writers(url)
    post_id, user_id, slug = _sample_ids(url)
    return Dataset(size, url, post_id, user_id, slug)


def prepare(size: Size, postgres: Cluster | None = None) -> Dataset:
    """The dataset for `size`: on SQLite, built if missing; on `postgres`, built now."""
    if postgres is not None:
        url = postgres.create_database(f"inkwell_{size.label}")
        print(f"bench: seeding the {size.label} dataset on PostgreSQL", file=sys.stderr)
        migrate(url)
        _seed(url, size)
        return _ready(size, url)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"inkwell-{size.label}.db"
    if not path.exists():
        build(size, path)
    return _ready(size, sqlite_url(path))
