"""The load balancer's probes: alive, and ready only on a reachable, migrated database."""

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.health import expected_revision


def test_healthz_answers_without_touching_the_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


def test_readyz_is_ok_on_a_database_at_the_newest_migration(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


@pytest.fixture
def altered(db: Session) -> Iterator[Callable[[str, str], None]]:
    """Run a statement now and its inverse after the test (PostgreSQL's schema is shared)."""
    undo: list[str] = []

    def alter(statement: str, inverse: str) -> None:
        db.execute(text(statement))
        db.commit()
        undo.append(inverse)

    yield alter
    for statement in reversed(undo):
        db.execute(text(statement))
    db.commit()


def test_readyz_refuses_while_the_schema_is_behind_the_code(
    client: TestClient, altered: Callable[[str, str], None]
) -> None:
    head = expected_revision()
    altered(
        "UPDATE alembic_version SET version_num = '0001'",
        f"UPDATE alembic_version SET version_num = '{head}'",
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == f"the database schema is at 0001, this code expects {head}"


def test_readyz_refuses_when_the_database_has_no_schema(
    client: TestClient, altered: Callable[[str, str], None]
) -> None:
    altered(
        "ALTER TABLE alembic_version RENAME TO alembic_version_gone",
        "ALTER TABLE alembic_version_gone RENAME TO alembic_version",
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "the database is unreachable or not migrated"


def test_probes_answer_head_requests(client: TestClient) -> None:
    assert client.head("/healthz").status_code == 200
    assert client.head("/readyz").status_code == 200


def test_the_expected_revision_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from services.health import MIGRATIONS_DIR

    assert expected_revision() == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
