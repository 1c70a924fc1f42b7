"""Migrations are the schema's source of truth: upgrade gives the models' schema exactly."""

import logging
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Engine, inspect, text
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex

from database import Base, make_engine
from models import Post, Revision
from services.revisions import get_revision

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 1, 15, tzinfo=UTC)


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture
def engine(empty_database_url: str):
    engine = make_engine(empty_database_url)
    yield engine
    engine.dispose()


# Full-text search objects are backend-specific and live in migration 0003 only.
SEARCH_OBJECTS = ("posts_fts", "search_vector", "ix_posts_search_vector")


def _is_model_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (name or "").startswith(SEARCH_OBJECTS)


def schema_differences(engine: Engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _is_model_object}
        )
        with warnings.catch_warnings():
            if engine.dialect.name == "sqlite":
                # SQLite's reflection cannot read an index on an expression, so Alembic skips
                # those (and says so); sqlite_expression_index_differences compares them.
                warnings.filterwarnings("ignore", message=".*expression-based index")
            differences = compare_metadata(context, Base.metadata)
        return differences + sqlite_expression_index_differences(connection)


def _normalised(sql: str | None) -> str:
    return " ".join((sql or "").replace("(", " ( ").replace(")", " ) ").split()).lower()


def sqlite_expression_index_differences(connection: Connection) -> list:
    """On SQLite, the models' indexes on expressions against the database's, by their DDL:
    each must exist exactly as the models would create it, and no other may exist."""
    if connection.dialect.name != "sqlite":
        return []
    stored = dict(
        connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        ).all()
    )
    differences = []
    modelled = set()
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            if all(isinstance(part, Column) for part in index.expressions):
                continue  # plain column indexes: compare_metadata sees these
            modelled.add(index.name)
            expected = str(CreateIndex(index).compile(dialect=connection.dialect))
            if _normalised(stored.get(index.name)) != _normalised(expected):
                differences.append(("expression index", index.name, stored.get(index.name)))
    for name in stored.keys() - modelled:
        columns = connection.exec_driver_sql(f'PRAGMA index_info("{name}")').all()
        if any(cid == -2 for _, cid, _ in columns):  # -2: an expression, not a column
            differences.append(("unmodelled expression index", name, stored[name]))
    return differences


def test_upgrade_head_matches_models_exactly(engine, empty_database_url):
    command.upgrade(alembic_config(empty_database_url), "head")
    assert schema_differences(engine) == []


def test_downgrade_to_base_and_back(engine, empty_database_url):
    config = alembic_config(empty_database_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    command.upgrade(config, "head")
    assert schema_differences(engine) == []


def test_each_revision_steps_down_and_up(engine, empty_database_url):
    config = alembic_config(empty_database_url)
    revisions = list(ScriptDirectory.from_config(config).walk_revisions())
    command.upgrade(config, "head")
    for _ in revisions:
        command.downgrade(config, "-1")
    command.upgrade(config, "head")
    assert schema_differences(engine) == []


def test_differences_are_detected(engine, empty_database_url):
    """The comparison itself can fail: a database missing a revision differs from the models."""
    config = alembic_config(empty_database_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert schema_differences(engine) != []


def test_data_survives_upgrade_and_downgrade(engine, empty_database_url):
    """Rebuilding a table on SQLite must not cascade-delete the rows that refer to it."""
    config = alembic_config(empty_database_url)
    command.upgrade(config, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, username, email, created_at)"
                " VALUES (1, 'old', 'o@x.io', :t)"
            ),
            {"t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO posts (title, content, user_id, date_posted, updated_at)"
                " VALUES ('kept', 'body', 1, :t, :t)"
            ),
            {"t": NOW},
        )
    command.upgrade(config, "head")
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT title FROM posts")).scalars().all() == ["kept"]
        user = connection.execute(text("SELECT username, password_hash FROM users")).one()
        assert tuple(user) == ("old", None)


def search_objects(engine: Engine) -> set[str]:
    inspector = inspect(engine)
    names = set(inspector.get_table_names())
    names |= {column["name"] for column in inspector.get_columns("posts")}
    return {name for name in names if name.startswith(SEARCH_OBJECTS)}


def test_search_index_comes_and_goes_with_its_revision(engine, empty_database_url):
    config = alembic_config(empty_database_url)
    command.upgrade(config, "head")
    expected = {"posts_fts"} if engine.dialect.name == "sqlite" else {"search_vector"}
    assert expected <= search_objects(engine)
    command.downgrade(config, "0002")
    assert search_objects(engine) == set()


def test_search_stays_in_step_after_stepping_down_and_up(engine, empty_database_url):
    """Rebuilding the posts table on SQLite would silently drop the search triggers."""
    config = alembic_config(empty_database_url)
    command.upgrade(config, "head")
    command.downgrade(config, "0003")
    command.upgrade(config, "head")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, username, email, created_at) VALUES (1, 'u', 'u@x.io', :t)"
            ),
            {"t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO posts (title, content, user_id, date_posted, updated_at, published_at)"
                " VALUES ('zebra crossing', 'body', 1, :t, :t, :t)"
            ),
            {"t": NOW},
        )
    from sqlalchemy.orm import Session

    from services.search import find

    with Session(engine) as session:
        assert [hit.post_id for hit in find(session, query="zebra", limit=5, offset=0).hits] == [1]


def test_case_twins_are_renamed_and_then_refused(engine, empty_database_url, caplog):
    """Revision 0008: of names that differ only in case the oldest is kept, each later one
    gets the first free `-N` (within the column's 50 characters), logged; then the index
    refuses any new twin, and stepping down leaves the names as they are."""
    from sqlalchemy.exc import IntegrityError

    config = alembic_config(empty_database_url)
    command.upgrade(config, "0007")
    names = ["frank", "FRANK", "Frank", "frank-2", "x" * 50, "X" * 50, "alice"]
    with engine.begin() as connection:
        for number, name in enumerate(names, start=1):
            connection.execute(
                text(
                    "INSERT INTO users (id, username, email, created_at)"
                    " VALUES (:id, :name, :email, :t)"
                ),
                {"id": number, "name": name, "email": f"u{number}@example.com", "t": NOW},
            )
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        command.upgrade(config, "head")

    def stored() -> list[str]:
        with engine.connect() as connection:
            return list(
                connection.execute(text("SELECT username FROM users ORDER BY id")).scalars()
            )

    renamed = ["frank", "FRANK-3", "Frank-4", "frank-2", "x" * 50, "X" * 48 + "-2", "alice"]
    assert stored() == renamed
    assert "Renamed user 2 from 'FRANK' to 'FRANK-3'" in caplog.text
    assert "Renamed user 6" in caplog.text
    assert "Renamed user 1 " not in caplog.text and "Renamed user 4 " not in caplog.text
    insert_alice = text(
        "INSERT INTO users (id, username, email, created_at)"
        " VALUES (100, 'ALICE', 'a2@example.com', :t)"
    )
    with (
        pytest.raises(IntegrityError, match="uq_users_lower_username"),
        engine.begin() as connection,
    ):
        connection.execute(insert_alice, {"t": NOW})
    command.downgrade(config, "0007")
    assert stored() == renamed
    with engine.begin() as connection:
        connection.execute(insert_alice, {"t": NOW})


def test_existing_posts_get_their_current_version_as_a_revision(engine, empty_database_url):
    """History never starts empty: each post's current version is copied, tags included."""
    config = alembic_config(empty_database_url)
    command.upgrade(config, "0009")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, username, email, created_at) VALUES (1, 'u', 'u@x.io', :t)"
            ),
            {"t": NOW},
        )
        for post_id, version in ((1, 3), (2, 1)):
            connection.execute(
                text(
                    "INSERT INTO posts (id, title, content, user_id, date_posted, updated_at,"
                    " published_at, version, status, slug)"
                    " VALUES (:id, :title, :content, 1, :t, :t, :t, :version, 'published', 's')"
                ),
                {
                    "id": post_id,
                    "title": f"T{post_id}",
                    "content": "Café <b>text</b>\n\nMore.",
                    "t": NOW,
                    "version": version,
                },
            )
        connection.execute(
            text("INSERT INTO tags (id, slug, name) VALUES (1, 'b', 'B'), (2, 'a', 'A')")
        )
        connection.execute(text("INSERT INTO post_tags (post_id, tag_id) VALUES (1, 2), (1, 1)"))
    command.upgrade(config, "head")
    with Session(engine) as db:
        post = db.get(Post, 1)
        assert [row.number for row in db.query(Revision).order_by(Revision.post_id)] == [3, 1]
        stored = get_revision(db, post=post, number=3)
        assert (stored.title, stored.content, stored.tags) == (
            "T1",
            "Café <b>text</b>\n\nMore.",
            ["B", "A"],
        )
        assert stored.revision.saved_at == NOW and stored.revision.user_id == 1
        assert get_revision(db, post=db.get(Post, 2), number=1).tags == []
    command.downgrade(config, "0009")
    assert "revisions" not in inspect(engine).get_table_names()
