"""Whether this process can serve: the database answers and its schema is the code's."""

from functools import cache
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@cache
def expected_revision() -> str | None:
    """The newest migration this code ships (read once: the files do not change under it)."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def readiness_problem(db: Session) -> str | None:
    """None when the database is reachable and migrated to this code's head, else why not."""
    try:
        current = db.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return "the database is unreachable or not migrated"
    finally:
        db.rollback()
    expected = expected_revision()
    if current != expected:
        return f"the database schema is at {current}, this code expects {expected}"
    return None
