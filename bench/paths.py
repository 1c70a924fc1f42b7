"""Files of post paths for reads that pick a page at random per request (lua/paths.lua):
a large sample of the whole dataset (a crawler's reads, nearly all cache misses) and a small
hot set (readers during the mixed load). Drawn with a seeded generator from the live posts,
so every run of a dataset reads the same pages."""

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import db
from bench.datasets import DATA_DIR, Dataset

CRAWL_COUNT = 20_000
HOT_COUNT = 1_000
CRAWL_SEED = 16
HOT_SEED = 61

# Live as Inkwell's `live()` has it: published by now, not hidden.
LIVE_POSTS_SQL = "SELECT id, slug FROM posts WHERE published_at <= ? AND NOT hidden ORDER BY id"


@dataclass(frozen=True)
class PathSet:
    file: Path
    count: int
    # One of the paths, to check that it answers 200 before the load starts.
    sample: str


def live_post_paths(url: str) -> list[str]:
    """Each live post's canonical address, /posts/{id}/{slug}, in id order."""
    with db.connect(url) as connection:
        now = connection.moment(datetime.now(UTC))
        rows = connection.execute(LIVE_POSTS_SQL, (now,)).fetchall()
    return [f"/posts/{post_id}/{slug}" for post_id, slug in rows]


def choose(paths: list[str], count: int, seed: int) -> list[str]:
    """`count` distinct paths (all of them when there are fewer), the same for the same seed."""
    return random.Random(seed).sample(paths, min(count, len(paths)))


def write(chosen: list[str], file: Path) -> PathSet:
    if not chosen:
        raise RuntimeError(f"no live posts to write to {file}")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("".join(path + "\n" for path in chosen), encoding="utf-8")
    return PathSet(file, len(chosen), chosen[0])


def prepare(dataset: Dataset) -> tuple[PathSet, PathSet]:
    """The crawl sample and the hot set for `dataset`, written under bench/data/."""
    every = live_post_paths(dataset.url)
    label = dataset.name
    crawl = write(choose(every, CRAWL_COUNT, CRAWL_SEED), DATA_DIR / f"paths-{label}-crawl.txt")
    hot = write(choose(every, HOT_COUNT, HOT_SEED), DATA_DIR / f"paths-{label}-hot.txt")
    return crawl, hot
