"""`inkwell seed` fills a migrated database with demo users and posts."""

import random

from sqlalchemy import func, select

import services.seed
from database import Base, make_engine
from models import Post, User
from services.seed import seed
from tests.support.commands import run_inkwell


def test_seed_adds_requested_rows_and_can_run_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    migrated = run_inkwell("migrate", "--database-url", url, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    result = run_inkwell(
        "seed", "--users", "5", "--posts", "40", "--database-url", url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Added 5 users and 40 posts.\n"
    # The progress bars go to stderr (where it is no terminal, just their labels).
    assert result.stderr.split() == ["users", "posts"]
    engine = make_engine(url)
    seed(engine, users=3, posts=10, rng=random.Random(2))
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(User)) == 8
        assert connection.scalar(select(func.count()).select_from(Post)) == 50
        orphans = select(func.count()).select_from(Post).where(Post.user_id.not_in(select(User.id)))
        assert connection.scalar(orphans) == 0
        newest = connection.execute(
            select(Post.id).order_by(Post.date_posted.desc()).limit(1)
        ).scalar()
        assert newest == 50
    engine.dispose()


def test_seed_reports_the_progress_of_each_table(tmp_path, monkeypatch):
    monkeypatch.setattr(services.seed, "BATCH_SIZE", 4)
    engine = make_engine(f"sqlite:///{tmp_path / 'seed.db'}")
    Base.metadata.create_all(engine)
    reports = []
    seed(engine, users=2, posts=10, rng=random.Random(3), progress=lambda *r: reports.append(r))
    engine.dispose()
    assert reports == [("users", 2, 2), ("posts", 4, 10), ("posts", 8, 10), ("posts", 10, 10)]
