"""Migrations are the schema's source of truth: upgrade gives the models' schema exactly."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from database import Base, make_engine

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
        return compare_metadata(context, Base.metadata)


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
                "INSERT INTO posts (title, content, user_id, date_posted, updated_at)"
                " VALUES ('zebra crossing', 'body', 1, :t, :t)"
            ),
            {"t": NOW},
        )
    from sqlalchemy.orm import Session

    from services.search import find

    with Session(engine) as session:
        assert [hit.post_id for hit in find(session, query="zebra", limit=5, offset=0).hits] == [1]
