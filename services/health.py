"""Whether this process can serve: the database answers and its schema is the code's."""

import ast
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
REVISION_NAMES = {"revision", "down_revision"}


@cache
def expected_revision() -> str | None:
    """The newest migration this code ships (read once: the files do not change under it).

    Read from the scripts' own `revision` and `down_revision` lines rather than through
    Alembic's ScriptDirectory, which would bring Alembic and Mako into every web worker
    (some 9 MB of its memory) for one answer. The head is the revision no other follows.
    """
    follows: dict[str, tuple[str, ...]] = {}
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        declared = _revision_lines(script)
        down = declared.get("down_revision")
        parents = () if down is None else (down,) if isinstance(down, str) else tuple(down)
        follows[declared["revision"]] = parents
    followed = {parent for parents in follows.values() for parent in parents}
    heads = sorted(set(follows) - followed)
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have several heads: {', '.join(heads)}")
    return heads[0] if heads else None


def _revision_lines(script: Path) -> dict[str, Any]:
    """What a migration script assigns to `revision` and `down_revision`."""
    found: dict[str, Any] = {}
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            for target in targets:
                if isinstance(target, ast.Name) and target.id in REVISION_NAMES:
                    found[target.id] = ast.literal_eval(node.value)
    return found


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
