"""Every list query walks an index in order: no full scan of posts, no sort step."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert

from models import Post, User
from services.posts import rendered_fields, rerender_stale_posts

LIST_PATHS = [
    "/",
    "/?page=3",
    "/users/{user}/posts",
    "/users/{user}/posts?page=2",
    "/api/posts",
    "/api/posts?page=4&per_page=7",
    "/api/users/{user}/posts",
    "/feed.xml",
    "/users/{user}/feed.xml",
    "/sitemap.xml",
    "/search?q=kettle",
    "/api/posts?q=kettle",
]


@pytest.fixture
def many_posts(app, db):
    start = datetime(2024, 1, 1, tzinfo=UTC)
    users = [{"username": f"u{n}", "email": f"u{n}@x.io", "created_at": start} for n in range(5)]
    db.execute(insert(User), users)
    fields = rendered_fields("About a kettle.")
    rows = [
        {
            "title": f"Kettle {n}",
            "content": "About a kettle.",
            "user_id": n % 5 + 1,
            "date_posted": start + timedelta(hours=n),
            "updated_at": start + timedelta(hours=n),
            **fields,
        }
        for n in range(300)
    ]
    db.execute(insert(Post), rows)
    db.commit()
    with app.state.database.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")


def test_list_queries_use_indexes_without_sorting(app, client, backend, many_posts):
    if backend != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans depend on table statistics")
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "ORDER BY" in statement.upper():
            captured.append((statement, parameters))

    engine = app.state.database.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        for path in LIST_PATHS:
            assert client.get(path.format(user=1)).status_code == 200, path
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(captured) >= len(LIST_PATHS)

    raw = engine.raw_connection()
    try:
        for statement, parameters in captured:
            plan = " | ".join(
                row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "TEMP B-TREE" not in plan, (statement, plan)
            full_scans = [step for step in plan.split(" | ") if step.startswith("SCAN posts ")]
            assert all("USING" in step for step in full_scans), (statement, plan)
    finally:
        raw.close()


def test_deep_pages_skip_rows_through_the_index_alone(app, client, backend, many_posts):
    if backend != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans depend on table statistics")
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM posts" in statement and "ORDER BY" in statement:
            captured.append((statement, parameters))

    engine = app.state.database.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert client.get("/?page=25").status_code == 200
        assert client.get("/users/1/posts?page=5").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    page_queries = [(sql, params) for sql, params in captured if "JOIN users" in sql]
    assert len(page_queries) == 2

    raw = engine.raw_connection()
    try:
        for statement, parameters in page_queries:
            steps = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
            # The skipped rows are counted off in an index alone (OFFSET on the page query
            # itself would read each skipped post row), and the page then starts at a key.
            walks = [step for step in steps if step.startswith(("SCAN posts", "SEARCH posts"))]
            assert any("COVERING INDEX" in step for step in walks), steps
            assert any("published_at<" in step for step in walks), steps
    finally:
        raw.close()


def test_start_up_finds_stale_renders_through_an_index(app, backend, many_posts):
    if backend != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans depend on table statistics")
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "render_version" in statement and statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    engine = app.state.database.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with app.state.database.session(write=True) as db:
            assert rerender_stale_posts(db) == 0
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(captured) == 1
    statement, parameters = captured[0]
    raw = engine.raw_connection()
    try:
        plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
    finally:
        raw.close()
    assert plan == ["SEARCH posts USING INDEX ix_posts_render_version (render_version<?)"], plan
