"""Fill the database with demo users and posts (`inkwell seed --users 100 --posts 1000`).

Rows go in with bulk INSERTs in large batches, so 100,000 posts take seconds, not minutes.
"""

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select

from models import Post, User
from services.posts import rendered_fields

BATCH_SIZE = 5_000

# Told after every batch: the table's name, rows written so far, rows to write in all.
Progress = Callable[[str, int, int], None]


class SeedError(Exception):
    """The demo data cannot be written; the message says why."""


def _no_progress(_label: str, _done: int, _total: int) -> None:
    pass


FIRST_NAMES = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "dennis",
    "barbara",
    "edsger",
    "donald",
    "frances",
    "john",
    "radia",
    "tim",
    "guido",
    "yukihiro",
    "brendan",
    "sophie",
    "katherine",
    "hedy",
    "niklaus",
    "leslie",
    "anita",
    "jean",
]
TOPICS = [
    "sourdough",
    "bicycles",
    "gardening",
    "typography",
    "databases",
    "birdwatching",
    "espresso",
    "chess",
    "woodworking",
    "astronomy",
    "hiking",
    "pottery",
    "photography",
    "climbing",
    "knitting",
    "jazz",
]
TITLE_SHAPES = (
    "Notes on {topic}",
    "What {topic} taught me about patience",
    "A beginner's guide to {topic}",
    "Ten small lessons from a year of {topic}",
    "Why I keep coming back to {topic}",
    "The quiet joy of {topic}",
    "{Topic}, revisited",
    "Mistakes I made with {topic}",
)
SENTENCES = (
    "I started with no plan at all, which turned out to be the right plan.",
    "The first attempt was a mess, and the second one was only slightly better.",
    "Most of the advice online contradicts itself, so I kept a notebook instead.",
    "It takes longer than you expect, and that is half of the pleasure.",
    "A friend pointed out something obvious that I had missed for months.",
    "The tools matter less than the habit of showing up every week.",
    "I measured everything for a while, then stopped once the numbers stopped surprising me.",
    "There is a community of people who care about this far more than I do, and they are kind.",
    "If I began again tomorrow I would start smaller and stay curious for longer.",
    "Some weekends nothing works, and those weekends teach the most.",
)


def user_rows(count: int, start: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC)
    for number in range(start, start + count):
        name = f"{rng.choice(FIRST_NAMES)}_{number}"
        joined = now - timedelta(days=rng.randint(30, 1500))
        yield {"username": name, "email": f"{name}@example.com", "created_at": joined}


def post_rows(count: int, user_ids: list[int], rng: random.Random) -> Iterator[dict[str, Any]]:
    # Spread posts over the last two years, in order, so ids and dates agree like real data.
    now = datetime.now(UTC)
    span = timedelta(days=730)
    for index in range(count):
        posted = now - span + span * (index + 1) / count
        topic = rng.choice(TOPICS)
        title = rng.choice(TITLE_SHAPES).format(topic=topic, Topic=topic.capitalize())
        paragraphs = ["  ".join(rng.sample(SENTENCES, 4)) for _ in range(rng.randint(2, 5))]
        content = "\n\n".join(paragraphs)
        yield {
            "title": title,
            "content": content,
            **rendered_fields(content),
            "user_id": rng.choice(user_ids),
            "date_posted": posted,
            "updated_at": posted,
        }


def insert_in_batches(
    engine: Engine, table: Any, rows: Iterator[dict[str, Any]], total: int, progress: Progress
) -> None:
    label = table.name
    done = 0
    with engine.begin() as connection:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH_SIZE:
                connection.execute(insert(table), batch)
                done += len(batch)
                batch.clear()
                if done < total:
                    progress(label, done, total)
        if batch:
            connection.execute(insert(table), batch)
    progress(label, total, total)


def seed(
    engine: Engine,
    *,
    users: int,
    posts: int,
    rng: random.Random,
    progress: Progress = _no_progress,
) -> None:
    """Add `users` users, then `posts` posts spread over all the users in the database."""
    with engine.connect() as connection:
        start = (connection.scalar(select(func.max(User.id))) or 0) + 1
    if users:
        rows = user_rows(users, start, rng)
        insert_in_batches(engine, User.__table__, rows, users, progress)
    with engine.connect() as connection:
        user_ids = list(connection.scalars(select(User.id)))
    if posts and not user_ids:
        raise SeedError("no users to write the posts; add some users too")
    if posts:
        rows = post_rows(posts, user_ids, rng)
        insert_in_batches(engine, Post.__table__, rows, posts, progress)
