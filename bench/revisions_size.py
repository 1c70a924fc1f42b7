"""How much room revision history takes: many small edits of one long post.

    .venv/bin/python -m bench.revisions_size [--edits 1000] [--words 5000] [--database-url URL]

It migrates the database given (by default a fresh SQLite file). It writes one post of
`--words` words through the same service the API and forms use, edits it `--edits` times
(each edit rewrites one sentence), and prints how much the database grew, how much of that
the revisions' stored text is, and what a full copy per edit would have taken instead.
"""

import argparse
import random
import sqlite3
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from config import PROJECT_ROOT
from database import Database
from models import Revision, User
from schemas import PostCreate, PostUpdate
from services import posts

SYLLABLES = ("ka", "lo", "mer", "tin", "sa", "vo", "ril", "den", "ash", "que", "po", "ly", "nor")
WORDS_PER_SENTENCE = 13
SENTENCES_PER_PARAGRAPH = 6


def sentences(words: int, seed: int = 11) -> Iterator[str]:
    """Numbered sentences of WORDS_PER_SENTENCE made-up words, as many as `words` needs:
    varied enough to compress about as well as real prose does (two to three times)."""
    rng = random.Random(seed)
    for number in range(-(-words // WORDS_PER_SENTENCE)):
        made_up = [
            "".join(rng.choices(SYLLABLES, k=rng.randint(1, 3)))
            for _ in range(WORDS_PER_SENTENCE - 4)
        ]
        yield f"This is sentence {number}, {' '.join(made_up)}."


def long_post(words: int = 5000) -> str:
    """A Markdown post of about `words` words in paragraphs of a few sentences."""
    lines = list(sentences(words))
    size = SENTENCES_PER_PARAGRAPH
    return "\n\n".join(" ".join(lines[i : i + size]) for i in range(0, len(lines), size))


def edited(content: str, number: int, sentence_count: int) -> str:
    """`content` with one sentence rewritten: the edit numbered `number`."""
    target = number * 7 % sentence_count
    return content.replace(f"sentence {target},", f"sentence {target} (edit {number}),", 1)


def revision_bytes(db: Session) -> int:
    """Bytes of the revisions' stored text (compressed snapshots and deltas)."""
    return db.scalar(select(func.coalesce(func.sum(func.length(Revision.body)), 0))) or 0


def revision_table_bytes(db: Session) -> int | None:
    """The revisions table with its indexes, as stored (PostgreSQL only: TOAST included)."""
    if db.get_bind().dialect.name != "postgresql":
        return None
    return db.scalar(text("SELECT pg_total_relation_size('revisions')"))


@dataclass(frozen=True)
class Measurement:
    edits: int
    post_bytes: int
    database_growth: int | None
    revision_bytes: int
    table_bytes: int | None
    copy_per_edit_bytes: int
    zlib_copy_per_edit_bytes: int


def database_bytes(db: Session) -> int | None:
    """The size of the whole database, after folding SQLite's log into the file."""
    bind = db.get_bind()
    if bind.dialect.name == "postgresql":
        return db.scalar(text("SELECT pg_database_size(current_database())"))
    path = bind.url.database
    db.commit()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return Path(path).stat().st_size if path else None


def measure(db: Session, *, edits: int, words: int) -> Measurement:
    """Write one long post and edit it `edits` times in `db`; what it cost in bytes."""
    author = User(username="revisions-bench", email="revisions-bench@example.com")
    db.add(author)
    db.commit()
    content = long_post(words)
    post = posts.create_post(db, data=PostCreate(title="Long", content=content), author=author)
    before = database_bytes(db)
    count = content.count("This is sentence")
    copies = zlib_copies = 0
    for number in range(edits):
        content = edited(content, number, count)
        post = posts.update_post(db, post=post, data=PostUpdate(content=content))
        copies += len(content.encode())
        zlib_copies += len(zlib.compress(content.encode(), 9))
    after = database_bytes(db)
    growth = after - before if before is not None and after is not None else None
    return Measurement(
        edits,
        len(content.encode()),
        growth,
        revision_bytes(db),
        revision_table_bytes(db),
        copies,
        zlib_copies,
    )


def _migrated(url: str) -> str:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    return url


def report(result: Measurement, backend: str) -> str:
    mib = 1024 * 1024
    growth = (
        "unknown" if result.database_growth is None else f"{result.database_growth / mib:.2f} MiB"
    )
    return "\n".join(
        [
            f"{backend}: {result.edits:,} one-sentence edits of a {result.post_bytes:,}-byte post",
            f"  database growth:          {growth}",
            f"  revisions' stored text:   {result.revision_bytes / mib:.2f} MiB"
            f" ({result.revision_bytes / max(result.edits, 1):,.0f} bytes per edit)",
            *(
                [f"  revisions table on disk:  {result.table_bytes / mib:.2f} MiB"]
                if result.table_bytes is not None
                else []
            ),
            f"  a full copy per edit:     {result.copy_per_edit_bytes / mib:.2f} MiB",
            f"  a zlib copy per edit:     {result.zlib_copy_per_edit_bytes / mib:.2f} MiB",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--words", type=int, default=5000)
    parser.add_argument("--database-url", help="an empty database (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = _migrated(args.database_url or f"sqlite:///{Path(directory) / 'revisions.db'}")
        database = Database(url)
        with database.session(write=True) as db:
            result = measure(db, edits=args.edits, words=args.words)
        print(report(result, database.engine.dialect.name))
        database.dispose()


if __name__ == "__main__":
    main()
