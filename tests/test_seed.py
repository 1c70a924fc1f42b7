"""The seed command fills a migrated database with demo users and posts."""

import random

from sqlalchemy import func, select

from database import Base, make_engine
from models import Post, User
from services.seed import main, seed


def test_seed_adds_requested_rows_and_can_run_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    main(["--users", "5", "--posts", "40", "--database-url", url])
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
