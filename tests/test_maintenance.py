"""Start-up maintenance: done once for the whole site, and never while holding a write lock."""

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from database import Database
from models import Post
from services import posts
from services.maintenance import MAINTENANCE_LOCK_KEY, maintenance_turn


def test_only_one_process_at_a_time_gets_the_maintenance_turn(database_url, backend):
    database, other_host = Database(database_url), Database(database_url)
    try:
        with maintenance_turn(database.engine) as first:
            assert first
            with maintenance_turn(other_host.engine) as second:
                # PostgreSQL: another host holds the lock. SQLite: writes queue anyway.
                assert second is (backend == "sqlite")
        with maintenance_turn(other_host.engine) as after_release:
            assert after_release
    finally:
        database.dispose()
        other_host.dispose()


def test_the_lock_is_released_when_the_work_fails(database_url, backend):
    if backend != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's")
    database = Database(database_url)
    try:
        with pytest.raises(RuntimeError), maintenance_turn(database.engine):
            raise RuntimeError("maintenance failed")
        with database.engine.connect() as connection:
            held = connection.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"),
                {"key": MAINTENANCE_LOCK_KEY % 2**32},
            )
        assert held == 0
    finally:
        database.dispose()


def test_stale_posts_are_rendered_outside_any_transaction(app, db: Session, make_post, monkeypatch):
    for number in range(3):
        make_post(title=f"Old {number}", content=f"*emphasis* {number}")
    db.execute(Post.__table__.update().values(content_html="", render_version=0))
    db.commit()
    render = posts.rendered_fields
    in_transaction: list[bool] = []
    with app.state.database.session(write=True) as maintenance:

        def watched(content: str) -> dict[str, object]:
            in_transaction.append(maintenance.in_transaction())
            return render(content)

        monkeypatch.setattr(posts, "rendered_fields", watched)
        assert posts.rerender_stale_posts(maintenance, batch_size=2) == 3
    assert in_transaction == [False, False, False]
    db.expire_all()
    html = db.scalars(db.query(Post.content_html).statement).all()
    assert all("<em>emphasis</em>" in fragment for fragment in html)
