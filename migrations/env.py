"""Alembic environment: the URL comes from the app's settings unless a caller sets one."""

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, event

import models  # noqa: F401  (registers the tables on Base.metadata)
from config import get_settings
from database import Base, make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_foreign_keys_off(engine: Engine) -> None:
    # Batch mode rebuilds a table by copying it and dropping the original; with foreign keys
    # on, that DROP would cascade and delete every dependent row (users -> posts).
    @event.listens_for(engine, "connect")
    def _off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def _check_foreign_keys(connection: Connection) -> None:
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration left rows with broken foreign keys: {problems[:5]}")


def run_migrations_online() -> None:
    # make_engine applies the app's SQLite pragmas (WAL, busy timeout) to migrations too.
    engine = make_engine(database_url())
    is_sqlite = engine.dialect.name == "sqlite"
    if is_sqlite:
        _sqlite_foreign_keys_off(engine)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite can only alter tables by copying them; batch mode does that.
                render_as_batch=is_sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if is_sqlite:
                    _check_foreign_keys(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
