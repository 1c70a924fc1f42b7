"""Benchmark datasets: SQLite files built with the project's own `inkwell seed` command, cached
in bench/data/ and reused when present (brought up to the latest migration on every run)."""

import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    path: Path
    # An existing post (from the middle of the table) and its author, for the detail routes.
    post_id: int
    user_id: int
    # The post's slug: its page lives at /posts/{id}/{slug} (the short address redirects).
    post_slug: str = "post"

    @property
    def url(self) -> str:
        return sqlite_url(self.path)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _sidecars(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def inkwell(*args: str) -> list[str]:
    """The project's command line (cli.py), run with this interpreter."""
    return [sys.executable, "-m", "cli", *args]


def migrate(path: Path) -> None:
    """`inkwell migrate` on the file (a no-op when it is up to date)."""
    subprocess.run(
        inkwell("migrate", "--database-url", sqlite_url(path)),
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=MIGRATE_TIMEOUT_S,
    )


def _seed(path: Path, size: Size) -> None:
    command = inkwell(
        "seed",
        "--users",
        str(size.users),
        "--posts",
        str(size.posts),
        "--database-url",
        sqlite_url(path),
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
    migrate(partial)
    _seed(partial, size)
    _checkpoint(partial)
    for sidecar in _sidecars(partial)[1:]:
        sidecar.unlink(missing_ok=True)
    partial.rename(path)


def remove_bench_writers(path: Path) -> int:
    """Delete the users the write benchmark created; their posts and tokens cascade."""
    with sqlite3.connect(path, timeout=30) as connection:
        connection.execute("PRAGMA foreign_keys=ON")
        deleted = connection.execute(
            "DELETE FROM users WHERE username LIKE ? ESCAPE '\\'",
            (WRITER_PREFIX.replace("_", "\\_") + "%",),
        ).rowcount
    connection.close()
    return deleted


def _sample_ids(path: Path) -> tuple[int, int, str]:
    with sqlite3.connect(path) as connection:
        (max_id,) = connection.execute("SELECT max(id) FROM posts").fetchone()
        row = connection.execute(
            "SELECT id, user_id, slug FROM posts WHERE id >= ? ORDER BY id LIMIT 1",
            ((max_id or 0) // 2,),
        ).fetchone()
    connection.close()
    if row is None:
        raise RuntimeError(f"{path} has no posts")
    return row[0], row[1], row[2]


def prepare(size: Size) -> Dataset:
    """The dataset for `size`: built if missing, migrated, cleared of earlier benchmark writes."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"inkwell-{size.label}.db"
    if not path.exists():
        build(size, path)
    migrate(path)
    remove_bench_writers(path)
    post_id, user_id, slug = _sample_ids(path)
    return Dataset(size, path, post_id, user_id, slug)
